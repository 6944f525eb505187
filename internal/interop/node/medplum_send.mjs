// Sends every message in the given files to HOST:PORT with @medplum/hl7's
// Hl7Client, one connection, waiting for each message's acknowledgment.
// Usage: node medplum_send.mjs HOST PORT FILE...
// Prints "<MSH-10> <MSA-1>[,<MSA-1>...]" per message: every acknowledgment
// that arrived for it, in order (an enhanced-mode message that asks for
// both gets a commit ACK, CA, then the application ACK). Exits 1 if a
// message got no acknowledgment or one other than AA or CA.
import { readFileSync } from 'node:fs';
import { Hl7Client, ReturnAckCategory } from '@medplum/hl7';
import { Hl7Message } from '@medplum/core';

const [host, port, ...files] = process.argv.slice(2);
const client = new Hl7Client({ host, port: Number(port) });
const conn = await client.connect();
const seen = new Map(); // MSA-2 -> [MSA-1...]
conn.addEventListener('message', ({ message }) => {
  const msa = message.getSegment('MSA');
  const id = msa?.getField(2)?.toString() ?? '';
  if (!seen.has(id)) seen.set(id, []);
  seen.get(id).push(msa?.getField(1)?.toString() ?? '');
});
const settle = () => new Promise((r) => setTimeout(r, 150));
let failed = 0;
for (const file of files) {
  let text = readFileSync(file, 'utf-8').replace(/^\uFEFF/, '');
  const lines = text.split(/\r\n|\r|\n/).filter((l) => l.trim() !== '');
  const messages = [];
  for (const line of lines) {
    if (line.startsWith('MSH')) messages.push([]);
    if (messages.length) messages[messages.length - 1].push(line);
  }
  for (const segs of messages) {
    const msg = Hl7Message.parse(segs.join('\r'));
    const id = msg.getSegment('MSH')?.getField(10)?.toString() ?? '';
    seen.delete(id);
    try {
      // The first acknowledgment, whichever; a second one (the
      // application ACK after a CA) is collected during the settle time.
      await client.sendAndWait(msg, { timeoutMs: 10000, returnAck: ReturnAckCategory.FIRST });
      await settle();
      const codes = seen.get(id) ?? [];
      if (!codes.length || codes.some((c) => c !== 'AA' && c !== 'CA')) failed++;
      process.stdout.write(`${id} ${codes.join(',')}\n`);
    } catch (e) {
      failed++;
      process.stdout.write(`${id} ERROR ${e.message}\n`);
    }
  }
}
await client.close();
process.exit(failed ? 1 : 0);
