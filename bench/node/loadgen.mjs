// The Node load generator of bench/signaling.py (`--loadgen node`): the official socket.io-client,
// running exactly the phases of bench/signaling_load.py's PythonLoad (read its docstring).
//
// stdin, line 1: {"url", "tokens": [...], "warmup", "updates", "rounds"}; later "go" after the
// idle memory reading. stdout: {"phase", "at": "start"|"end"} at phase boundaries,
// {"idle": true} when idle, and finally {"result": {join_ms, fanout_deliveries, fanout_seconds,
// signal_ms, errors}}.
import readline from "node:readline";
import { io } from "socket.io-client";

const CONNECT_CONCURRENCY = 25;
const ACK_TIMEOUT_MS = 30000;
const ANSWER_TIMEOUT_MS = 10000; // a lost answer is an error, not a reason to stall the run
const CANDIDATE =
  "candidate:842163049 1 udp 1677729535 192.0.2.10 49203 typ srflx raddr 10.0.0.5 rport 49203 generation 0";

const lines = readline.createInterface({ input: process.stdin });
const inbox = lines[Symbol.asyncIterator]();
const nextLine = async () => (await inbox.next()).value;

const print = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const now = () => performance.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const errors = [];
const disconnects = {}; // reason -> count: the server (or a ping timeout) dropped clients
function checkAck(ack) {
  if (!(ack && ack.ok) && errors.length < 20) errors.push(JSON.stringify(ack).slice(0, 200));
}

let expected = 0;
let seen = 0;
let allSeen = null;

class Member {
  constructor(url, token) {
    this.maxOffset = 0;
    this.answers = new Map();
    this.socket = io(url, { auth: { token }, transports: ["websocket"], reconnection: false, forceNew: true, autoConnect: false, timeout: 30000 });
    this.socket.on("presence", (event) => {
      if (event.offset > this.maxOffset) this.maxOffset = event.offset;
      if (event.type === "update") {
        seen += 1;
        if (seen === expected && allSeen) allSeen(now());
      }
    });
    this.socket.on("disconnect", (reason) => {
      if (reason !== "io client disconnect") {
        disconnects[reason] = (disconnects[reason] ?? 0) + 1;
      }
    });
    this.socket.on("signal", (message) => {
      if (message.type === "offer") {
        this.socket.emit("signal", { to: message.from, type: "answer", data: message.data }, checkAck);
        return;
      }
      const waiter = this.answers.get(message.data.n);
      if (waiter) {
        this.answers.delete(message.data.n);
        waiter(now());
      }
    });
  }

  connect() {
    return new Promise((resolve, reject) => {
      this.socket.once("connect", resolve);
      this.socket.once("connect_error", reject);
      this.socket.connect();
    });
  }

  async call(event, data) {
    if (!this.socket.connected) {
      // socket.io-client would buffer the emit until a reconnect that never comes (reconnection
      // is off) and then time out: fail at once, so a dropped client cannot stall the run.
      if (errors.length < 20) errors.push(`${event}: not connected`);
      return {};
    }
    try {
      const ack = await this.socket.timeout(ACK_TIMEOUT_MS).emitWithAck(event, data);
      checkAck(ack);
      return ack;
    } catch (err) {
      if (errors.length < 20) errors.push(`${event}: ${err.message}`);
      return {};
    }
  }
}

async function phase(name, body) {
  print({ phase: name, at: "start" });
  const value = await body();
  print({ phase: name, at: "end" });
  return value;
}

async function main() {
  const config = JSON.parse(await nextLine());
  const { url, tokens, warmup, updates, rounds, joinConcurrency } = config;

  const first = new Member(url, warmup);
  await first.connect();
  await first.call("join", {});
  await first.call("update", { metadata: { warm: true } });
  first.socket.disconnect();

  const members = tokens.map((token) => new Member(url, token));
  await phase("connect", async () => {
    let next = 0;
    const worker = async () => {
      while (next < members.length) await members[next++].connect();
    };
    await Promise.all(Array.from({ length: CONNECT_CONCURRENCY }, worker));
  });

  const joinMs = [];
  await phase("join", async () => {
    let next = 0;
    let last = 0;
    const worker = async () => {
      while (next < members.length) {
        const member = members[next++];
        const start = now();
        const ack = await member.call("join", {});
        joinMs.push(now() - start);
        last = Math.max(last, ack.offset ?? 0);
      }
    };
    await Promise.all(Array.from({ length: joinConcurrency }, worker));
    const deadline = now() + 60000;
    while (members.some((m) => m.maxOffset < last) && now() < deadline) await sleep(10);
  });

  await sleep(2000);
  print({ idle: true });
  await nextLine();

  seen = 0;
  expected = members.length * members.length * updates;
  const finished = new Promise((resolve) => (allSeen = resolve));
  let fanoutStart = 0;
  let fanoutEnd = 0;
  await phase("fanout", async () => {
    fanoutStart = now();
    await Promise.all(
      members.map(async (member, index) => {
        for (let n = 0; n < updates; n++) await member.call("update", { metadata: { n, i: index } });
      }),
    );
    const timeout = sleep(60000).then(() => {
      errors.push(`fan-out: ${seen} of ${expected} deliveries within 60 s`);
      return now();
    });
    fanoutEnd = await Promise.race([finished, timeout]);
  });

  const signalMs = [];
  await phase("signal", async () => {
    const pairs = [];
    for (let i = 0; i < members.length; i += 2) pairs.push([members[i], members[i + 1], i / 2]);
    await Promise.all(
      pairs.map(async ([a, , pair]) => {
        const to = `c${2 * pair + 1}`;
        for (let r = 0; r < rounds; r++) {
          const n = pair * rounds + r;
          const answered = new Promise((resolve) => a.answers.set(n, resolve));
          const start = now();
          const ack = await a.call("signal", { to, type: "offer", data: { n, candidate: CANDIDATE } });
          if (!ack.ok) continue; // counted as an error; no answer will come
          const end = await Promise.race([answered, sleep(ANSWER_TIMEOUT_MS).then(() => null)]);
          if (end === null) errors.push(`signal ${n}: no answer within ${ANSWER_TIMEOUT_MS} ms`);
          else signalMs.push(end - start);
        }
      }),
    );
  });

  for (const member of members) member.socket.disconnect();
  print({
    result: {
      join_ms: joinMs,
      fanout_deliveries: seen,
      fanout_seconds: (fanoutEnd - fanoutStart) / 1000,
      signal_ms: signalMs,
      errors: Object.keys(disconnects).length ? [...errors, `disconnected: ${JSON.stringify(disconnects)}`] : errors,
    },
  });
  lines.close();
  setTimeout(() => process.exit(0), 100);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
