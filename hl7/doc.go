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
//   - Character sets follow MSH-18 (HL7 table 0211): ASCII, UTF-8
//     ("UNICODE UTF-8", and "UNICODE", which names no encoding form and is
//     read as UTF-8) and the ISO 8859 family ("8859/1" ...). The other
//     ASCII-compatible sets of the table (ISO IR87, GB 18030-2000,
//     KS X 1001, BIG-5, ...) are read when the text is valid UTF-8 (plain
//     ASCII, say); their multi-byte forms, UTF-16 and UTF-32 are refused
//     with a ParseError on MSH-18. Text is held as UTF-8 and written back in
//     the message's own character set. A message that declares 8859/x but is
//     valid UTF-8 is read as UTF-8 (a common mislabel); a message without
//     MSH-18 that is not valid UTF-8 is read as ISO 8859-1. Either way the
//     original bytes are reproduced on encoding.
//   - Errors name the segment (number and id) and byte offset, never the
//     content of the message, so they are safe to log.
//   - ReadHeader reads the MSH of a message that ParseHeader refuses (a
//     broken MSH-2, an unsupported MSH-18, a bare "MSH|") well enough to
//     address an acknowledgment, so that a receiver can answer every
//     message that starts with MSH and a field separator.
//   - Header gives MSH-3 to MSH-6 whole, as hierarchic designators (HD:
//     namespace id, universal id and its type); HD.Normalized renders one
//     for keys: trimmed, HD.3 upper-cased (a table 0301 code), "|" escaped.
//   - BuildAck leaves the fraction (or the UTC offset) out of the
//     acknowledgment's MSH-7 when "." (or the sign) is one of the message's
//     delimiters.
//   - Message and Segment format themselves with %v as a short summary, not
//     their content, so a stray fmt call cannot leak patient data.
//   - LookupSegment, LookupType and PathName describe segments, fields and
//     data types from embedded HL7 v2.3 to 2.7.1 definitions (npm
//     hl7-dictionary 1.0.1, MIT; README.defs.md). Other versions, 2.8
//     among them, are described by the nearest defined one.
package hl7
