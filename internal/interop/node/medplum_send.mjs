// Sends every message in the given files to HOST:PORT with @medplum/hl7's
// Hl7Client, one connection, waiting for each application ACK.
// Usage: node medplum_send.mjs HOST PORT FILE...
// Prints "<MSH-10> <MSA-1>" per message; exits 1 unless every ACK is AA.
import { readFileSync } from 'node:fs';
import { Hl7Client } from '@medplum/hl7';
import { Hl7Message } from '@medplum/core';

const [host, port, ...files] = process.argv.slice(2);
const client = new Hl7Client({ host, port: Number(port) });
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
    try {
      const ack = await client.sendAndWait(msg, { timeoutMs: 10000 });
      const code = ack.getSegment('MSA')?.getField(1)?.toString() ?? '';
      if (code !== 'AA') failed++;
      process.stdout.write(`${id} ${code}\n`);
    } catch (e) {
      failed++;
      process.stdout.write(`${id} ERROR ${e.message}\n`);
    }
  }
}
await client.close();
process.exit(failed ? 1 : 0);
