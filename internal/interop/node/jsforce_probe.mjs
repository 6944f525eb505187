// jsforce_probe.mjs BASE_URL — drives the ehrbridge CRM sandbox with the real
// jsforce client (3.6.6, node 20) and prints one JSON line per step:
// {"step": ..., "ok": true, ...} or {"step": ..., "ok": false, "errorCode": ...}.
// The Go test (internal/sandbox/sf_jsforce_test.go) checks the lines.
import jsforce from 'jsforce';

const base = process.argv[2];
const oauth2 = { loginUrl: base, clientId: 'sandbox-client', clientSecret: 'sandbox-secret' };
const out = (o) => console.log(JSON.stringify(o));

async function step(name, fn) {
  try {
    const r = await fn();
    out({ step: name, ok: true, ...r });
  } catch (e) {
    out({ step: name, ok: false, errorCode: e.errorCode || e.name, message: String(e.message) });
  }
}

const conn = new jsforce.Connection({ oauth2, version: '59.0' });
await step('login', async () => {
  const u = await conn.login('integration@sandbox.example', 'sandbox-password');
  return { user: !!u.id, instanceUrl: conn.instanceUrl };
});
await step('client_credentials', async () => {
  const c = new jsforce.Connection({ oauth2, version: '59.0' });
  await c.authorize({ grant_type: 'client_credentials' });
  return { token: !!c.accessToken };
});
await step('bad_password', async () => {
  const c = new jsforce.Connection({ oauth2, version: '59.0' });
  await c.login('integration@sandbox.example', 'wrong');
  return {};
});
await step('create', async () => {
  const r = await conn.sobject('Account').create({ LastName: 'Solo' });
  return { id: r.id, success: r.success };
});
await step('upsert_new', async () => {
  const r = await conn.sobject('Account').upsert({ SourceSystemIdentifier: 'JSF-1', LastName: 'Doe', FirstName: 'John' }, 'SourceSystemIdentifier');
  return { created: r.created, success: r.success };
});
await step('upsert_again', async () => {
  const r = await conn.sobject('Account').upsert({ SourceSystemIdentifier: 'JSF-1', LastName: 'Doe', FirstName: 'Jane' }, 'SourceSystemIdentifier');
  return { created: r.created, success: r.success };
});
await step('retrieve', async () => {
  const [r] = await conn.sobject('Account').find({ SourceSystemIdentifier: 'JSF-1' }, ['Id', 'FirstName']);
  return { firstName: r.FirstName };
});
await step('create_collection', async () => {
  const rs = await conn.sobject('Contact').create([{ LastName: 'A' }, { LastName: 'B' }], { allOrNone: true });
  return { success: rs.map((r) => r.success), ids: rs.filter((r) => r.id).length };
});
await step('upsert_collection', async () => {
  const rs = await conn.sobject('Contact').upsert([{ MRN__c: 'M1', LastName: 'One' }, { MRN__c: 'M2', LastName: 'Two' }], 'MRN__c', { allOrNone: false });
  return { created: rs.map((r) => r.created), success: rs.map((r) => r.success) };
});
await step('update_collection', async () => {
  const found = await conn.sobject('Contact').find({ LastName: ['A', 'B'] }, ['Id']);
  const rs = await conn.sobject('Contact').update(found.map((r) => ({ Id: r.Id, FirstName: 'Updated' })));
  return { success: rs.map((r) => r.success) };
});
await step('required_field', async () => {
  await conn.sobject('Account').create({ FirstName: 'NoLastName' });
  return {};
});
await step('multiple_choices', async () => {
  await conn.sobject('Account').create({ LastName: 'Twin', SourceSystemIdentifier: 'DUP' });
  await conn.sobject('Account').create({ LastName: 'Twin', SourceSystemIdentifier: 'DUP' });
  await conn.sobject('Account').upsert({ SourceSystemIdentifier: 'DUP', LastName: 'X' }, 'SourceSystemIdentifier');
  return {};
});
await step('query_paging', async () => {
  for (let i = 0; i < 7; i++) await conn.sobject('Task').create({ Subject: 'T' + i });
  const first = await conn.query('SELECT Id, Subject FROM Task ORDER BY Subject');
  const all = await conn.query('SELECT Id, Subject FROM Task ORDER BY Subject').run({ autoFetch: true, maxFetch: 100 });
  return { firstPage: first.records.length, done: first.done, next: !!first.nextRecordsUrl, total: first.totalSize, all: all.records.map((r) => r.Subject).join(',') };
});
await step('refresh_on_invalid_session', async () => {
  const c = new jsforce.Connection({ oauth2, version: '59.0', instanceUrl: base, accessToken: '00Dexpired!token', refreshToken: 'RT123' });
  let refreshed = false;
  c.on('refresh', () => { refreshed = true; });
  const r = await c.sobject('Account').create({ LastName: 'AfterRefresh' });
  return { refreshed, success: r.success };
});
await step('limits', async () => {
  const l = await conn.limits();
  return { max: l.DailyApiRequests.Max, remaining: l.DailyApiRequests.Remaining > 0 };
});
