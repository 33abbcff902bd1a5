// The load generator of bench/signaling.py: the official socket.io-client in one Node process,
// driven one command at a time so that the benchmark can meter the server's CPU per phase.
//
// stdin, line 1: {"url", "clients": [{"token", "room", "identity"}...]}; then one command per
// line, each answered with one JSON line on stdout once it is done:
//   {"cmd": "connect", "inFlight"}                    -> {"done", "errors"}
//   {"cmd": "join", "inFlight"}                       -> {"done", "ack_ms", "delivered_ms", "errors"}
//   {"cmd": "idle", "seconds"}                        -> {"done", "pings", "errors"}
//   {"cmd": "update", "count", "inFlight", "bytes"}   -> {"done", "ack_ms", "delivered_ms", "deliveries", "errors"}
//   {"cmd": "signal", "count", "inFlight", "bytes"}   -> {"done", "rtt_ms", "errors"}
//   {"cmd": "close"}                                  -> {"done"}, then the process exits
// Operations run `inFlight` at a time, and a join or an update is done only when its presence
// event has reached every member of the room (`delivered_ms`): what the server has sent and the
// clients have not read yet stays bounded, whichever side is faster. (Counting only acks, a
// server faster than this one process of clients buried it under presence events until pings
// sat behind seconds of unread data and every client dropped with "ping timeout".)
import readline from "node:readline";
import { io } from "socket.io-client";

const ACK_TIMEOUT_MS = 60000;
const ARRIVAL_TIMEOUT_MS = 120000; // everything a phase sent must arrive within this
const MAX_ERRORS = 20; // the first few say what went wrong; more is noise

const print = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const now = () => performance.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
// The promise's value, or null after `ms`.
function within(promise, ms) {
  let timer;
  const timeout = new Promise((resolve) => (timer = setTimeout(resolve, ms, null)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

let errors = [];
const disconnects = {}; // reason -> count: the server (or a ping timeout) dropped clients
function error(message) {
  if (errors.length < MAX_ERRORS) errors.push(message);
}
function checkAck(ack) {
  if (!(ack && ack.ok)) error(JSON.stringify(ack).slice(0, 200));
}

let pings = 0; // Engine.IO pings received by every client together
let updatesSeen = 0; // presence `update` events received by every client together
const answers = new Map(); // signal number -> resolve(time the answer arrived)
// presence key -> {arrived, expected, resolve}: how far an operation's deliveries have come
const arrivals = new Map();

// A presence event's key: `r0 join c12` or `r0 update 7` (the update's metadata.i).
const keyOf = (room, type, participant) =>
  type === "join" ? `${room} join ${participant.identity}` : `${room} update ${participant.metadata.i}`;

function arrived(key, count) {
  const waiting = arrivals.get(key);
  if (!waiting) return;
  waiting.arrived += count;
  if (waiting.expected !== null && waiting.arrived >= waiting.expected) {
    arrivals.delete(key);
    waiting.resolve(now());
  }
}

// A text of `bytes` characters shaped like what it stands for (an SDP, metadata).
const filler = (bytes, line) => line.repeat(Math.ceil(bytes / line.length)).slice(0, bytes);

class Member {
  constructor(url, { token, room, identity }) {
    this.room = room;
    this.identity = identity;
    this.socket = io(url, {
      auth: { token }, transports: ["websocket"], reconnection: false, forceNew: true, autoConnect: false,
      timeout: ACK_TIMEOUT_MS,
    });
    this.socket.io.on("ping", () => (pings += 1));
    this.socket.on("presence", ({ type, participant }) => {
      if (type === "update") updatesSeen += 1;
      if (type === "join" || type === "update") arrived(keyOf(room, type, participant), 1);
    });
    this.socket.on("disconnect", (reason) => {
      if (reason !== "io client disconnect") disconnects[reason] = (disconnects[reason] ?? 0) + 1;
    });
    this.socket.on("signal", (message) => {
      if (message.type === "offer") {
        this.socket.emit("signal", { to: message.from, type: "answer", data: message.data }, checkAck);
        return;
      }
      const resolve = answers.get(message.data.n);
      if (resolve) {
        answers.delete(message.data.n);
        resolve(now());
      }
    });
  }

  connect() {
    return new Promise((resolve) => {
      this.socket.once("connect", resolve);
      this.socket.once("connect_error", (err) => {
        error(`connect: ${err.message}`);
        resolve();
      });
      this.socket.connect();
    });
  }

  async call(event, data) {
    if (!this.socket.connected) {
      // socket.io-client would buffer the emit until a reconnect that never comes
      error(`${event}: not connected`);
      return {};
    }
    try {
      const ack = await this.socket.timeout(ACK_TIMEOUT_MS).emitWithAck(event, data);
      checkAck(ack);
      return ack;
    } catch (err) {
      error(`${event}: ${err.message}`);
      return {};
    }
  }
}

// Runs task(i) for i in [0, count), `inFlight` at a time.
async function pool(count, inFlight, task) {
  let next = 0;
  const worker = async () => {
    while (next < count) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(inFlight, count) }, worker));
}

// Sends the event, then waits for its ack and for its presence event (`key`) to reach every
// member: `recipients(ack)` of them.
async function delivered(member, event, data, key, recipients, ackMs, deliveredMs) {
  const start = now();
  const all = new Promise((resolve) => arrivals.set(key, { arrived: 0, expected: null, resolve }));
  const ack = await member.call(event, data);
  ackMs.push(now() - start);
  if (!ack.ok) return arrivals.delete(key); // counted as an error; nothing will arrive
  arrivals.get(key).expected = recipients(ack);
  arrived(key, 0);
  const end = await within(all, ARRIVAL_TIMEOUT_MS);
  if (end === null) {
    arrivals.delete(key);
    error(`${key}: not delivered to every member within ${ARRIVAL_TIMEOUT_MS / 1000} s`);
  } else deliveredMs.push(end - start);
}

const commands = {
  async connect(members, { inFlight }) {
    await pool(members.length, inFlight, (i) => members[i].connect());
    return {};
  },

  // A join reaches every participant of the room, the joiner included: those in its ack.
  async join(members, { inFlight }) {
    const [ackMs, deliveredMs] = [[], []];
    const recipients = (ack) => ack.participants.length;
    await pool(members.length, inFlight, async (i) => {
      const { room, identity } = members[i];
      await delivered(members[i], "join", {}, `${room} join ${identity}`, recipients, ackMs, deliveredMs);
    });
    return { ack_ms: ackMs, delivered_ms: deliveredMs };
  },

  async idle(members, { seconds }) {
    const before = pings;
    await sleep(seconds * 1000);
    return { pings: pings - before };
  },

  // `count` updates from members in turn; each reaches the sender's whole room.
  async update(members, { count, inFlight, bytes }) {
    const size = new Map();
    for (const m of members) size.set(m.room, (size.get(m.room) ?? 0) + 1);
    const [ackMs, deliveredMs] = [[], []];
    const before = updatesSeen;
    const note = filler(bytes, "status: available, camera on, mic muted; ");
    await pool(count, inFlight, async (i) => {
      const member = members[i % members.length];
      const data = { metadata: { i, note } };
      const key = `${member.room} update ${i}`;
      await delivered(member, "update", data, key, () => size.get(member.room), ackMs, deliveredMs);
    });
    return { ack_ms: ackMs, delivered_ms: deliveredMs, deliveries: updatesSeen - before };
  },

  // `count` round trips: member 2k offers to member 2k+1 (same room), which answers.
  async signal(members, { count, inFlight, bytes }) {
    const pairs = Math.floor(members.length / 2);
    const sdp = filler(bytes, "a=candidate:842163049 1 udp 1677729535 192.0.2.10 49203 typ srflx\r\n");
    const rttMs = [];
    await pool(count, inFlight, async (n) => {
      const pair = n % pairs;
      const [a, b] = [members[2 * pair], members[2 * pair + 1]];
      const answered = new Promise((resolve) => answers.set(n, resolve));
      const start = now();
      const ack = await a.call("signal", { to: b.identity, type: "offer", data: { n, sdp } });
      if (!ack.ok) return answers.delete(n); // counted as an error; no answer will come
      const end = await within(answered, ACK_TIMEOUT_MS);
      if (end === null) error(`signal ${n}: no answer within ${ACK_TIMEOUT_MS / 1000} s`);
      else rttMs.push(end - start);
    });
    return { rtt_ms: rttMs };
  },
};

async function main() {
  const lines = readline.createInterface({ input: process.stdin });
  const inbox = lines[Symbol.asyncIterator]();
  const { url, clients } = JSON.parse((await inbox.next()).value);
  const members = clients.map((client) => new Member(url, client));
  for await (const line of inbox) {
    const command = JSON.parse(line);
    if (command.cmd === "close") {
      for (const member of members) member.socket.disconnect();
      print({ done: "close" });
      break;
    }
    errors = [];
    const result = await commands[command.cmd](members, command);
    const dropped = Object.keys(disconnects).length ? [`disconnected: ${JSON.stringify(disconnects)}`] : [];
    print({ done: command.cmd, ...result, errors: [...errors, ...dropped] });
  }
  lines.close();
  setTimeout(() => process.exit(0), 100);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
