// An HL7 receiver built on @medplum/hl7's Hl7Connection (the protocol
// engine behind its Hl7Server), bound to 127.0.0.1 on a free port.
// Usage: node medplum_server.mjs [--enhanced]
// Prints "LISTENING <port>", then "RECEIVED <MSH-10> <MSH-9>" per message.
// In enhanced mode the connection sends a commit ACK (CA) before our AA.
// Exits when stdin closes.
import net from 'node:net';
import { Hl7Connection } from '@medplum/hl7';

const enhanced = process.argv.includes('--enhanced');
const server = net.createServer((socket) => {
  const conn = new Hl7Connection(socket, 'utf-8', enhanced);
  conn.addEventListener('message', ({ message }) => {
    const msh = message.getSegment('MSH');
    const id = msh?.getField(10)?.toString() ?? '';
    const type = msh?.getField(9)?.toString() ?? '';
    process.stdout.write(`RECEIVED ${id} ${type}\n`);
    conn.send(message.buildAck());
  });
  conn.addEventListener('error', (e) => process.stderr.write(`connection error: ${e.error?.message ?? e}\n`));
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`LISTENING ${server.address().port}\n`));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
