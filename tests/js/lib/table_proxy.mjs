// A proxy in front of a real Azurite that refuses what a test asks it to. It lets tests see
// how the handler treats a Table service that rejects one device's rows (400) or answers a
// $batch with a 500 — which Azurite did for some input before the handler escaped it, and
// which Azure may do in ways Azurite cannot reproduce on demand. Everything else is passed
// through byte for byte (Shared Key signs the path, not the host, so signatures stay valid).
import http from 'node:http';
import { connectionString } from './azurite.mjs';

/**
 * rule({method, url, body}) returns undefined to forward the request, or a reply
 * {status, headers?, body?}. Returns {port, connection, seen, close()}; seen counts the
 * replies the rule made.
 */
export async function startTableProxy(targetPort, rule) {
  const state = { seen: 0 };
  const srv = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const reply = rule({ method: req.method, url: req.url, body: body.toString('utf8') });
      if (reply) {
        state.seen++;
        res.writeHead(reply.status, reply.headers ?? { 'Content-Type': 'application/json;odata=minimalmetadata' });
        res.end(reply.body ?? '');
        return;
      }
      const up = http.request({ host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers: req.headers },
        (ur) => { res.writeHead(ur.statusCode, ur.headers); ur.pipe(res); });
      up.on('error', (e) => { res.writeHead(502); res.end(String(e)); });
      up.end(body);
    });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  return {
    port,
    connection: connectionString(port),
    get seen() { return state.seen; },
    close: () => new Promise((r) => { srv.closeAllConnections?.(); srv.close(r); }),
  };
}

/** An odata.error body. */
export function odataError(code, message) {
  return JSON.stringify({ 'odata.error': { code, message: { lang: 'en-US', value: `${message}\nRequestId:x\nTime:x` } } });
}

/** The 202 an Azure $batch answers when operation `index` failed with `status`. */
export function batchFailure(index, status, code, message) {
  const b = 'batchresponse_0000', c = 'changesetresponse_0000';
  const body = [`--${b}`, `Content-Type: multipart/mixed; boundary=${c}`, '', `--${c}`,
    'Content-Type: application/http', 'Content-Transfer-Encoding: binary', '', `HTTP/1.1 ${status} Refused`,
    'Content-Type: application/json;odata=minimalmetadata;streaming=true;charset=utf-8', '',
    odataError(code, `${index}:${message}`), `--${c}--`, `--${b}--`, ''].join('\r\n');
  return { status: 202, headers: { 'Content-Type': `multipart/mixed; boundary=${b}` }, body };
}

/** Index of the $batch operation whose part mentions `needle`, or -1. */
export function batchIndexOf(body, needle) {
  const parts = body.split(/\r?\n--changeset_[0-9a-f]+/).slice(1);
  return parts.findIndex((p) => p.includes(needle));
}
