// Package hl7 reads and writes HL7 version 2 messages.
//
// A Message keeps every field in its encoded (escaped) form, exactly as it
// arrived, and splits repetitions, components and subcomponents only when a
// value is asked for. That keeps parsing cheap on the ingest path and makes an
// unchanged message re-encode byte for byte (after segment terminators are
// normalised to CR and a leading byte order mark is dropped).
//
// Values are addressed with 1-based paths as integration engineers write
// them: "PID-5.1", "PID-3[2].1" (second repetition), "PID-3.4.2"
// (subcomponent), "OBX[2]-5" (second OBX segment), "MSH-9.2". MSH is numbered
// as the standard prescribes: MSH-1 is the field separator and MSH-2 the
// encoding characters.
//
// Caveats:
//   - Escape sequences (\F\ \S\ \T\ \R\ \E\ \P\ \Xhh..\) are decoded when a
//     leaf value is read and applied when a value is written. Formatting
//     escapes (\.br\, \.sp\, \H\, \N\, ...) are kept intact by Value.String;
//     Value.Text renders them for people (\.br\ becomes a newline).
//   - The HL7 explicit null, a field holding exactly "" (two double quotes),
//     is reported by Value.IsNull and is distinct from an empty value.
//   - Character sets follow MSH-18: ASCII, UTF-8 ("UNICODE UTF-8") and the ISO
//     8859 family ("8859/1" ...). Text is held as UTF-8 and written back in
//     the message's own character set. A message that declares 8859/x but is
//     valid UTF-8 is read as UTF-8 (a common mislabel); a message without
//     MSH-18 that is not valid UTF-8 is read as ISO 8859-1. Either way the
//     original bytes are reproduced on encoding.
//   - Errors name the segment (number and id) and byte offset, never the
//     content of the message, so they are safe to log.
//   - Message and Segment format themselves with %v as a short summary, not
//     their content, so a stray fmt call cannot leak patient data.
package hl7
