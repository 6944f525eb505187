// Drives an MLLP receiver in HL7 enhanced acknowledgment mode with
// @medplum/hl7's Hl7Client, as an enhanced-mode sender would.
// Usage: node medplum_enhanced.mjs HOST PORT
// For each MSH-15/MSH-16 pair below it sends one ADT^A01 and prints
//   "<MSH-15>/<MSH-16> <resolved MSA-1> <every MSA-1 received, in order>"
// where "resolved" is what sendAndWait returned: with the default
// returnAck (application) it waits past a CA for the application ACK, so
// it is used only when MSH-16 asks for one; otherwise returnAck "first".
// Then it retransmits the AL/AL message and prints "RETRANSMIT same" when
// the raw bytes of both answers match the first time's byte for byte
// ("RETRANSMIT differ" otherwise). Exits when done.
import { Hl7Client, ReturnAckCategory } from '@medplum/hl7';
import { Hl7Message } from '@medplum/core';

const [host, port] = process.argv.slice(2);
const client = new Hl7Client({ host, port: Number(port) });
const conn = await client.connect();
const seen = new Map(); // MSA-2 -> [MSA-1...]
let raw = [];
conn.socket.on('data', (b) => raw.push(b));
conn.addEventListener('message', ({ message }) => {
  const msa = message.getSegment('MSA');
  const id = msa?.getField(2)?.toString() ?? '';
  if (!seen.has(id)) seen.set(id, []);
  seen.get(id).push(msa?.getField(1)?.toString() ?? '');
});
const settle = () => new Promise((r) => setTimeout(r, 200));
const run = Date.now().toString(36);
const build = (id, accept, app) =>
  Hl7Message.parse(
    `MSH|^~\\&|MEDPLUM|HOSP|EHRBRIDGE|CRM|20240101120000||ADT^A01^ADT_A01|${id}|P|2.5.1|||${accept}|${app}\r` +
      `PID|1||MRN-${id}^^^HOSP^MR||DOE^JANE||19800101|F`
  );

async function exchange(msg, app) {
  const returnAck = app === 'AL' || app === 'SU' ? ReturnAckCategory.APPLICATION : ReturnAckCategory.FIRST;
  raw = [];
  const ack = await client.sendAndWait(msg, { timeoutMs: 5000, returnAck });
  await settle();
  return { code: ack.getSegment('MSA')?.getField(1)?.toString() ?? '', bytes: Buffer.concat(raw) };
}

let first;
for (const [accept, app] of [['AL', 'AL'], ['AL', 'NE'], ['NE', 'AL'], ['SU', 'SU']]) {
  const id = `ENH-${run}-${accept}${app}`;
  const msg = build(id, accept, app);
  try {
    const r = await exchange(msg, app);
    if (accept === 'AL' && app === 'AL') first = { msg, bytes: r.bytes };
    process.stdout.write(`${accept}/${app} ${r.code} ${(seen.get(id) ?? []).join(',')}\n`);
  } catch (e) {
    process.stdout.write(`${accept}/${app} ERROR ${e.message}\n`);
  }
}
try {
  const again = await exchange(first.msg, 'AL');
  process.stdout.write(`RETRANSMIT ${again.bytes.equals(first.bytes) ? 'same' : 'differ'}\n`);
} catch (e) {
  process.stdout.write(`RETRANSMIT ERROR ${e.message}\n`);
}
await client.close();
process.exit(0);
