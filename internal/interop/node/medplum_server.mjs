// An HL7 receiver built on @medplum/hl7's Hl7Connection (the protocol
// engine behind its Hl7Server), bound to 127.0.0.1 on a free port.
// Usage: node medplum_server.mjs [--enhanced] [--ack AE|AR] [--honour-msh16]
// Prints "LISTENING <port>", then "RECEIVED <MSH-10> <MSH-9> <TXA-12>" per
// message (TXA-12 empty for messages without TXA).
// In enhanced mode the connection sends a commit ACK (CA) before our AA;
// --ack answers every message with that code instead of AA.
// --honour-msh16 sends the application ACK only when the message's MSH-16
// asks for it (HL7 table 0155: AL or empty always, NE never, ER on error
// only, SU on success only); without it every message gets one.
// Exits when stdin closes.
import net from 'node:net';
import { Hl7Connection } from '@medplum/hl7';

const enhanced = process.argv.includes('--enhanced');
const ackIdx = process.argv.indexOf('--ack');
const ackCode = ackIdx > 0 ? process.argv[ackIdx + 1] : 'AA';
const honour = process.argv.includes('--honour-msh16');
const server = net.createServer((socket) => {
  const conn = new Hl7Connection(socket, 'utf-8', enhanced);
  conn.addEventListener('message', ({ message }) => {
    const msh = message.getSegment('MSH');
    const id = msh?.getField(10)?.toString() ?? '';
    const type = msh?.getField(9)?.toString() ?? '';
    const doc = message.getSegment('TXA')?.getField(12)?.getComponent(1) ?? '';
    process.stdout.write(`RECEIVED ${id} ${type} ${doc}\n`);
    const msh16 = msh?.getField(16)?.toString() ?? '';
    const due = !honour || !(msh16 === 'NE' || (msh16 === 'ER' && ackCode === 'AA') || (msh16 === 'SU' && ackCode !== 'AA'));
    if (due) {
      conn.send(message.buildAck({ ackCode }));
    }
  });
  conn.addEventListener('error', (e) => process.stderr.write(`connection error: ${e.error?.message ?? e}\n`));
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`LISTENING ${server.address().port}\n`));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
