// Interop between the C Table client (driven through tests/tools/table_tool) and Microsoft's
// @azure/data-tables SDK, both against the Azurite started by tests/run.sh.
// Needs TEST_STORAGE_CONNECTION and ENVIROMON_TEST_TOOLS (exported by tests/run.sh).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { createHmac, randomBytes } from "node:crypto";
import path from "node:path";
import { AzureNamedKeyCredential, TableClient, TableServiceClient, generateTableSas } from "@azure/data-tables";

const run = promisify(execFile);
const conn = process.env.TEST_STORAGE_CONNECTION;
const tools = process.env.ENVIROMON_TEST_TOOLS;
assert.ok(conn, "TEST_STORAGE_CONNECTION must be set (run through tests/run.sh)");
assert.ok(tools, "ENVIROMON_TEST_TOOLS must be set (run through tests/run.sh)");
const tool = path.join(tools, "table_tool");
const table = "interop" + randomBytes(6).toString("hex");
const opts = { allowInsecureConnection: true };
let client;

async function ctool(...args) {
  return ctoolWith(conn, ...args);
}
async function ctoolWith(connstr, ...args) {
  const env = { ...process.env, TEST_STORAGE_CONNECTION: connstr };
  // Under `make valgrind` (ENVIROMON_WRAPPER="valgrind ...") the tool runs inside the wrapper too.
  const wrap = (process.env.ENVIROMON_WRAPPER || "").split(/\s+/).filter(Boolean);
  const [cmd, ...pre] = wrap.length ? wrap : [tool];
  const { stdout } = await run(cmd, wrap.length ? [...pre, tool, ...args] : args, { env, timeout: 60000 });
  return JSON.parse(stdout);
}

// Independent Shared Key GET (node:crypto, not the C signer) so that we can ask Azurite for
// odata=fullmetadata, the only form in which a stored Double 22.0 is distinguishable from
// an Int32 22 (minimalmetadata prints both as 22, and the SDK then reports Int32).
function parseConn(s) {
  const m = {};
  for (const part of s.split(";")) {
    const i = part.indexOf("=");
    if (i > 0) m[part.slice(0, i).toLowerCase()] = part.slice(i + 1);
  }
  return m;
}
async function rawFullMetadata(pk, rk) {
  const c = parseConn(conn);
  const esc = (k) => encodeURIComponent(k.replace(/'/g, "''")).replace(/'/g, "%27");
  const url = new URL(`${c.tableendpoint.replace(/\/$/, "")}/${table}(PartitionKey='${esc(pk)}',RowKey='${esc(rk)}')`);
  const date = new Date().toUTCString();
  const sts = `GET\n\n\n${date}\n/${c.accountname}${url.pathname}`;
  const sig = createHmac("sha256", Buffer.from(c.accountkey, "base64")).update(sts, "utf8").digest("base64");
  const r = await fetch(url, {
    headers: {
      "x-ms-date": date, "x-ms-version": "2019-02-02",
      Accept: "application/json;odata=fullmetadata",
      Authorization: `SharedKey ${c.accountname}:${sig}`,
    },
  });
  assert.equal(r.status, 200, await r.clone().text());
  return r.text();
}

before(async () => {
  client = TableClient.fromConnectionString(conn, table, opts);
  await ctool("create", table); // the C client creates the table
});

after(async () => {
  await TableServiceClient.fromConnectionString(conn, opts).deleteTable(table);
});

test("entity written by the C client is read by the SDK with the right types", async () => {
  const pk = "dev'1 ü", rk = "state";
  const put = await ctool("put", table, pk, rk);
  assert.match(put.etag, /^W\/"datetime'/);

  const e = await client.getEntity(pk, rk);
  assert.equal(e.etag, put.etag, "SDK sees the ETag the C client reported");
  assert.equal(e.Count, 9007199254740993n, "Int64 above 2^53 exact (bigint)");
  assert.equal(e.Negative, -9223372036854775808n);
  assert.ok(e.LastSeen instanceof Date, "DateTime comes back as a Date");
  assert.equal(e.LastSeen.toISOString(), "2024-01-02T03:04:05.123Z");
  assert.equal(e.Name, "O'Brien ✓ ü");
  assert.equal(e.Flag, true);
  assert.equal(e.Ratio, 0.1);

  const raw = await client.getEntity(pk, rk, { disableTypeConversion: true });
  assert.deepEqual(raw.Count, { value: "9007199254740993", type: "Int64" });
  assert.deepEqual(raw.Nan, { value: "NaN", type: "Double" });
  assert.deepEqual(raw.PosInf, { value: "Infinity", type: "Double" });
  assert.deepEqual(raw.Ratio, { value: "0.1", type: "Double" });
  assert.equal(raw.LastSeen.type, "DateTime");
  assert.equal(raw.LastSeen.value, "2024-01-02T03:04:05.1234567Z");

  // 22.0 must be stored as Edm.Double, not Int32: fullmetadata prints doubles with ".0".
  const full = await rawFullMetadata(pk, rk);
  assert.match(full, /"Celsius":22\.0[,}]/, full);
});

test("control: an Int32 written by the SDK is not mistaken for a double", async () => {
  await client.upsertEntity({ partitionKey: "ctl", rowKey: "1", I: 22 });
  const full = await rawFullMetadata("ctl", "1");
  assert.match(full, /"I":22[,}]/, full);
});

test("entity written by the SDK is read by the C client with the right types", async () => {
  const pk = "sdk", rk = "row 'one'";
  await client.createEntity({
    partitionKey: pk, rowKey: rk,
    Count: { value: "9007199254740995", type: "Int64" },
    Big: 1234567890123456789n,
    Temp: { value: "22", type: "Double" },
    Half: 21.5,
    When: new Date("2024-05-06T07:08:09.123Z"),
    Name: "héllo 'world'",
    On: true,
  });
  const sdkView = await client.getEntity(pk, rk);
  const got = await ctool("get", table, pk, rk);
  assert.equal(got.etag, sdkView.etag, "C client returns the same ETag the SDK sees");
  assert.equal(got.typed.Count.type, "Edm.Int64");
  assert.equal(got.typed.Count.int64, "9007199254740995", "Int64 above 2^53 exact");
  assert.equal(got.typed.Big.int64, "1234567890123456789");
  assert.equal(got.typed.Temp.double, 22);
  assert.equal(got.typed.Half.double, 21.5);
  assert.equal(got.typed.When.type, "Edm.DateTime");
  assert.equal(got.typed.When.string, "2024-05-06T07:08:09.123Z");
  assert.equal(got.typed.Name.string, "héllo 'world'");
  assert.equal(got.entity.On, true);
  assert.equal(got.entity.PartitionKey, pk);
  assert.equal(got.entity.RowKey, rk);
});

test("the C client works with an SDK-generated table SAS, and a read-only SAS cannot write", async () => {
  const c = parseConn(conn);
  const cred = new AzureNamedKeyCredential(c.accountname, c.accountkey);
  const expiresOn = new Date(Date.now() + 3600 * 1000);
  const rw = generateTableSas(table, cred, { permissions: { query: true, add: true, update: true, delete: true }, expiresOn });
  const ro = generateTableSas(table, cred, { permissions: { query: true }, expiresOn });
  const sasConn = (sas) => `TableEndpoint=${c.tableendpoint};SharedAccessSignature=${sas}`;

  const put = await ctoolWith(sasConn(rw), "put", table, "sas", "row1");
  const sdkView = await client.getEntity("sas", "row1");
  assert.equal(sdkView.etag, put.etag);
  const got = await ctoolWith(sasConn(ro), "get", table, "sas", "row1");
  assert.equal(got.typed.Count.int64, "9007199254740993");

  await assert.rejects(ctoolWith(sasConn(ro), "put", table, "sas", "row2"),
    (err) => err.code === 1 && /authorization failed|40[13]/.test(err.stderr) && !err.stderr.includes("sig="));
  await assert.rejects(client.getEntity("sas", "row2"), (err) => err.statusCode === 404);
});
