// connection.js — the dashboard's link to the function app: a SignalR connection that never
// gives up, and the device snapshot loaded over HTTP whenever the connection (re)starts.
//
// @microsoft/signalr's automatic reconnect covers a connection that drops, but not a first
// start() that fails (the API is down when the page loads) nor a reconnect policy that runs
// out, so both go through one retry loop here. Every (re)connect reloads the snapshot, because
// pushes sent while we were away are lost. States for the indicator: 'connecting',
// 'connected', 'reconnecting', 'offline' (with the time of the next attempt).

/** Wait before attempt n (0-based) of a reconnect or a failed start: quick first, then 15 s ± jitter. */
export function retryDelayMs(attempt, random = Math.random) {
  const steps = [0, 1000, 2000, 5000, 10000];
  if (attempt < steps.length) return steps[attempt];
  return 15000 + Math.floor(random() * 5000);
}

const SNAPSHOT_TIMEOUT_MS = 15000;

/**
 * A logger for @microsoft/signalr: a lost connection is an expected, handled condition that the
 * page shows in its indicator, so the client's errors become console warnings; details stay
 * out of the console below Warning.
 */
function makeLogger(signalR) {
  const L = signalR.LogLevel;
  return {
    log(level, message) {
      if (level >= L.Warning && level !== L.None) console.warn(`SignalR: ${message}`);
    },
  };
}

export class Connection {
  /**
   * signalR: the @microsoft/signalr namespace; api: the function app's base URL;
   * onPush(arg): a newMessage argument; onSnapshot(body): the parsed snapshot;
   * onState({state, retryAt, error, snapshotError}): for the indicator.
   */
  constructor({ signalR, api, onPush, onSnapshot, onState, fetchImpl = (...a) => fetch(...a) }) {
    this.signalR = signalR;
    this.api = api;
    this.onPush = onPush;
    this.onSnapshot = onSnapshot;
    this.onState = onState;
    this.fetch = fetchImpl;
    this.state = { state: 'connecting', retryAt: null, error: null, snapshotError: null };
    this.snapshotTimer = null;
    this.epoch = 0;                 // bumps on every (re)connect; stale snapshot loads are dropped
    this.stopped = false;
    this.running = false;           // the start loop is active
    this.hub = new signalR.HubConnectionBuilder()
      .withUrl(`${api}/api`)
      .withAutomaticReconnect({ nextRetryDelayInMilliseconds: (ctx) => retryDelayMs(ctx.previousRetryCount) })
      .configureLogging(makeLogger(signalR))
      .build();
    this.hub.on('newMessage', (arg) => this.onPush(arg));
    this.hub.onreconnecting((err) => this.#set({ state: 'reconnecting', retryAt: null, error: err ? String(err.message ?? err) : null }));
    this.hub.onreconnected(() => this.#connected());
    this.hub.onclose((err) => { if (!this.stopped) this.#startLoop(err); });
  }

  #set(patch) {
    this.state = { ...this.state, ...patch };
    this.onState(this.state);
  }

  /** Connect (retrying for ever) and keep connected until stop(). */
  start() {
    this.stopped = false;
    this.#startLoop(null);
  }

  async stop() {
    this.stopped = true;
    clearTimeout(this.snapshotTimer);
    clearTimeout(this.retryTimer);
    await this.hub.stop();
  }

  async #startLoop(lastError) {
    if (this.running) return;
    this.running = true;
    let err = lastError;
    for (let attempt = 0; !this.stopped; attempt++) {
      const wait = attempt === 0 && !err ? 0 : retryDelayMs(attempt);
      if (wait > 0) {
        this.#set({ state: 'offline', retryAt: Date.now() + wait, error: err ? String(err.message ?? err) : null });
        await new Promise((r) => { this.retryTimer = setTimeout(r, wait); });
        if (this.stopped) break;
      }
      this.#set({ state: 'connecting', retryAt: null });
      try {
        await this.hub.start();
        this.running = false;
        this.#connected();
        return;
      } catch (e) {
        err = e;
      }
    }
    this.running = false;
  }

  #connected() {
    this.epoch++;
    this.#set({ state: 'connected', retryAt: null, error: null });
    this.#loadSnapshot(this.epoch, 0);
  }

  async #loadSnapshot(epoch, attempt) {
    clearTimeout(this.snapshotTimer);
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), SNAPSHOT_TIMEOUT_MS);
    let problem = null;
    try {
      const r = await this.fetch(`${this.api}/api/getdevicestate?broadcast=false`, {
        headers: { Accept: 'application/json' }, signal: ctl.signal, cache: 'no-store',
      });
      if (!r.ok) {
        problem = `device snapshot: HTTP ${r.status}`;
      } else {
        const body = await r.json();
        if (epoch === this.epoch) this.onSnapshot(body);
      }
    } catch (e) {
      problem = `device snapshot: ${e.name === 'AbortError' ? 'timed out' : e.message}`;
    } finally {
      clearTimeout(timer);
    }
    if (epoch !== this.epoch || this.stopped) return;
    this.#set({ snapshotError: problem });
    if (problem && this.hub.state === this.signalR.HubConnectionState.Connected) {
      this.snapshotTimer = setTimeout(() => this.#loadSnapshot(epoch, attempt + 1), Math.max(1000, retryDelayMs(attempt + 1)));
    }
  }
}
