// dwa_probe.mjs SERVER_URL TOKEN — drives a Dataverse Web API server (SERVER_URL is
// the org root, e.g. https://127.0.0.1:8443; TLS trust comes from NODE_EXTRA_CA_CERTS)
// with the real dynamics-web-api client (2.5.0, node 20) and prints ONE JSON object:
// {"<step>": {"value": ...}} on success or {"<step>": {"error": {status, code, message}}}.
// propagateErrors:true makes upsert/delete throw instead of returning null on 412/404.
// Steps run in order; a failing step does not stop the ones after it.
import { DynamicsWebApi } from 'dynamics-web-api';

const [serverUrl, token] = process.argv.slice(2);
const api = new DynamicsWebApi({
  serverUrl,
  dataApi: { version: '9.2' },
  onTokenRefresh: async () => token,
  propagateErrors: true,
});
const result = {};

// A malformed 2xx $batch body makes the library throw inside the response's 'end'
// listener, outside any promise: report what ran so far plus the crash, exit 1.
const crash = (e) => {
  result.crash = { message: String(e?.stack || e) };
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(1));
};
process.on('uncaughtException', crash);
process.on('unhandledRejection', crash);

function errInfo(e) {
  if (Array.isArray(e)) {
    // A non-2xx $batch response is rejected with the array of parsed parts.
    return { status: null, code: null, message: 'batch rejected', parts: e.map(part) };
  }
  const inner = e && typeof e.error === 'object' && e.error ? e.error : {};
  return {
    status: e?.status ?? null,
    code: e?.code ?? inner.code ?? null,
    message: String(e?.message || inner.message || e),
  };
}

// One element of an executeBatch() result: failed parts come back as Error objects.
function part(p) {
  return p instanceof Error ? { error: errInfo(p) } : p === undefined ? null : p;
}

async function step(name, fn) {
  try {
    const v = await fn();
    result[name] = { value: v === undefined ? null : v };
  } catch (e) {
    result[name] = { error: errInfo(e) };
  }
}

let id = null;
const needId = () => {
  if (!id) throw new Error('no contact id from step a_create');
  return id;
};
await step('a_create', async () => {
  id = await api.create({ collection: 'contacts', data: { firstname: 'John', lastname: 'Doe', new_mrn: 'MRN-001' } });
  return id;
});
await step('b_create_return_representation', () =>
  api.create({ collection: 'contacts', data: { lastname: 'Rep', new_mrn: 'MRN-REP' }, returnRepresentation: true, select: ['contactid', 'lastname'] }),
);
await step('c_upsert_existing', () => api.upsert({ collection: 'contacts', key: "new_mrn='MRN-001'", data: { lastname: 'Doe2' } }));
await step('d_upsert_new', () => api.upsert({ collection: 'contacts', key: "new_mrn='MRN-NEW'", data: { lastname: 'New' } }));
await step('e_upsert_ifnonematch_exists', () =>
  api.upsert({ collection: 'contacts', key: "new_mrn='MRN-001'", data: { lastname: 'X' }, ifnonematch: '*' }),
);
await step('f_upsert_ifmatch_missing', () =>
  api.upsert({ collection: 'contacts', key: "new_mrn='MISSING'", data: { lastname: 'X' }, ifmatch: '*' }),
);
await step('g_upsert_quoted_key', () => api.upsert({ collection: 'contacts', key: "new_mrn='O''Brien'", data: { lastname: 'OBrien' } }));

const listRequest = () => ({
  collection: 'contacts',
  select: ['contactid', 'lastname', 'new_mrn'],
  filter: "lastname ne 'zzz'",
  orderBy: ['new_mrn asc'],
  maxPageSize: 2,
});
await step('h_retrieve_multiple', async () => {
  const r = await api.retrieveMultiple(listRequest());
  return { count: r.value.length, hasNextLink: !!r.oDataNextLink };
});
await step('h_retrieve_all', async () => {
  const r = await api.retrieveAll(listRequest());
  return { count: r.value.length, mrns: r.value.map((c) => c.new_mrn ?? null) };
});
await step('i_retrieve', () => api.retrieve({ collection: 'contacts', key: needId(), select: ['lastname'] }));

await step('j_batch', async () => {
  api.startBatch();
  // Calls made between startBatch() and executeBatch() only queue (they resolve to undefined).
  await api.create({ collection: 'contacts', data: { lastname: 'Batch1', new_mrn: 'MRN-B1' }, contentId: '1' });
  await api.upsert({ collection: 'contacts', key: "new_mrn='MRN-B2'", data: { lastname: 'Batch2' } });
  await api.retrieveMultiple({ collection: 'contacts', select: ['lastname'], top: 5 });
  const r = await api.executeBatch();
  return Array.isArray(r) ? r.map(part) : r;
});
await step('k_batch_no_changeset', async () => {
  api.startBatch();
  await api.upsert({ collection: 'contacts', key: "new_mrn='MRN-K1'", data: { lastname: 'K1' } });
  await api.upsert({ collection: 'contacts', key: "new_mrn='MRN-K2'", data: { lastname: 'K2' } });
  const r = await api.executeBatch({ inChangeSet: false });
  return Array.isArray(r) ? r.map(part) : r;
});

await step('l_delete', () => api.deleteRecord({ collection: 'contacts', key: needId() }));
await step('l_retrieve_deleted', () => api.retrieve({ collection: 'contacts', key: needId(), select: ['lastname'] }));

process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(0));
