// Build EventTrigger invocations exactly as the Functions host sends them for an
// eventHubTrigger with cardinality "many" and dataType "string"
// (shared/reference/custom-handler-protocol.md §2): Data.events is a STRING holding a JSON
// array of strings (each one event body); the *Array metadata are strings holding arrays;
// PartitionContext is an object. Enqueued times come without a "Z", as the host sends them.
import { TableClient } from '@azure/data-tables';

/**
 * events: [{body, deviceId (system property; omit for plain Event Hubs), seq, enqueued, props}]
 *   body: an object (JSON-encoded here) or a string sent verbatim as the event body.
 * stream: {ns, hub, partition}
 */
export function wireBatch(events, { ns = 'test-ns.servicebus.windows.net', hub = 'enviromon-hub', partition = '0', decoded = false } = {}) {
  const bodies = events.map((e) => (typeof e.body === 'string' ? e.body : JSON.stringify(e.body)));
  const sys = events.map((e) => {
    const s = { SequenceNumber: e.seq, Offset: String((e.seq ?? 0) * 100), PartitionKey: null,
      EnqueuedTimeUtc: e.enqueued ?? '2026-01-02T03:04:05.123' };
    if (e.deviceId !== undefined) {
      s['iothub-connection-device-id'] = e.deviceId;
      s['iothub-connection-auth-method'] = '{"scope":"device","type":"sas","issuer":"iothub"}';
      s['iothub-message-source'] = 'Telemetry';
    }
    return s;
  });
  const seqs = events.map((e) => e.seq ?? null);
  const times = events.map((e) => e.enqueued ?? '2026-01-02T03:04:05.123');
  const props = events.map((e) => e.props ?? {});
  const pc = { FullyQualifiedNamespace: ns, EventHubName: hub, ConsumerGroup: '$Default', PartitionId: partition,
    IsCheckpointingAfterInvocation: true };
  const enc = (v) => (decoded ? v : JSON.stringify(v));
  return {
    data: { events: enc(bodies) },
    metadata: {
      PartitionContext: pc,
      PartitionKeyArray: enc(events.map(() => null)),
      OffsetArray: enc(events.map((e) => String((e.seq ?? 0) * 100))),
      SequenceNumberArray: enc(seqs),
      EnqueuedTimeUtcArray: enc(times),
      PropertiesArray: enc(props),
      SystemPropertiesArray: enc(sys),
      sys: { MethodName: 'EventTrigger', UtcNow: new Date().toISOString(), RandGuid: crypto.randomUUID() },
    },
  };
}

export function tableClient(conn, table) {
  return TableClient.fromConnectionString(conn, table, { allowInsecureConnection: true });
}

/** All rows of a partition as {RowKey: entity}. */
export async function rowsOf(conn, table, pk) {
  const tc = tableClient(conn, table);
  const out = {};
  try {
    for await (const e of tc.listEntities({ queryOptions: { filter: `PartitionKey eq '${pk}'` } })) out[e.rowKey] = e;
  } catch (e) {
    if (e.statusCode === 404) return out;
    throw e;
  }
  return out;
}

/** A unique partition key per test so tests never see each other's rows. */
export function uniquePk(tag) {
  return `${tag}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

/** The key=value pairs of the batch summary line in an invocation's Logs (numbers parsed). */
export function summaryOf(json) {
  const logs = json?.Logs ?? json?.logs ?? [];
  const line = logs.find((l) => /EventTrigger batch:/.test(l));
  if (!line) throw new Error(`no summary line in ${JSON.stringify(logs)}`);
  const out = {};
  for (const m of line.matchAll(/(\w+)=(\S+)/g)) out[m[1]] = /^-?[\d.]+$/.test(m[2]) ? Number(m[2]) : m[2];
  return out;
}

/** The newMessage arguments in Outputs.signalRMessages, keyed by deviceId. */
export function pushesOf(json) {
  const msgs = json?.Outputs?.signalRMessages ?? [];
  const out = {};
  for (const m of msgs) {
    if (m.target !== 'newMessage' || !Array.isArray(m.arguments) || m.arguments.length !== 1) {
      throw new Error(`malformed SignalR message ${JSON.stringify(m)}`);
    }
    const a = m.arguments[0];
    if (out[a.deviceId]) throw new Error(`two messages for ${a.deviceId}`);
    out[a.deviceId] = a;
  }
  return out;
}
