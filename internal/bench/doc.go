// Package bench measures ehrbridge's durable ingest against the storage
// it is built on, in one process and on one filesystem, so that the
// figures can be compared with each other rather than with a number
// measured on some other machine.
//
// Ingest runs nine phases, each for the same duration in a fresh data
// directory:
//
//   - raw bbolt, one goroutine, one Update per record (the cost of one
//     fsynced commit);
//   - raw bbolt, many goroutines sharing commits through a single
//     committer goroutine (the group commit checkpoint uses, with one Put
//     per record);
//   - HL7 ADT^A01 messages over loopback MLLP into checkpoint through
//     connectors/ehr's MLLPSource, one connection, each message waiting for
//     its AA;
//   - the same with many connections;
//   - the many connections again, paced to half the rate just measured,
//     for the latency of an ACK under an ordinary load;
//   - the bbolt group commit with its writers paced the same way, for the
//     commit latency at that load;
//   - the checkpoint log alone at that load, paced writers calling Append
//     with entries made as the MLLP source makes them, no network;
//   - the paced connections again without fsync (not durable): the ACK
//     latency the MLLP path and this machine give with no disk wait, a
//     floor under the half-load ratio;
//   - the many connections without fsync (not durable), the ceiling the
//     ingest path's CPU and network put on this machine.
//
// The phases each ratio compares run interleaved in short slices, as the
// disk's speed drifts within minutes.
//
// It prints the figures and the ratios the project's goals are stated in:
// ingest throughput divided by the matching bbolt throughput, and the ACK
// p99 at half load divided by the p99 of the bbolt group commits at the
// same load. Timing on a shared machine is noisy: the tests check that the
// figures are produced, never that the goals are met.
package bench
