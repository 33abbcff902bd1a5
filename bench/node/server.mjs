// The baseline for bench/signaling.py: a minimal Node socket.io server doing roomwire's relay.
//
// Same wire shapes as roomwire (PROTOCOL.md) for the events the benchmark uses, and the same
// work per event where it matters: an HS256 token checked at connect, `join` acked with the
// participant list, every presence change broadcast to the room with epoch/offset, `update`,
// and `signal` relayed to one participant found by identity. No persistence, no rate limit,
// no validation beyond what the relay needs: it is the floor roomwire is compared with.
//
//   node server.mjs --port 8090 --secret S      (prints "listening <port>" when ready)
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";
import { parseArgs } from "node:util";
import { Server } from "socket.io";

const { values } = parseArgs({
  options: { port: { type: "string", default: "8090" }, secret: { type: "string" } },
});
if (!values.secret) throw new Error("--secret is required");

function verify(token) {
  if (typeof token !== "string") return null;
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  const expected = createHmac("sha256", values.secret).update(`${parts[0]}.${parts[1]}`).digest();
  const given = Buffer.from(parts[2], "base64url");
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
  const claims = JSON.parse(Buffer.from(parts[1], "base64url").toString());
  if (typeof claims.exp !== "number" || claims.exp * 1000 < Date.now()) return null;
  if (typeof claims.sub !== "string" || typeof claims.room !== "string") return null;
  return claims;
}

// room -> {epoch, offset, participants: Map(identity -> participant), owners: Map(identity -> sid)}
const rooms = new Map();

function roomState(name) {
  let state = rooms.get(name);
  if (!state) {
    state = { epoch: randomBytes(6).toString("base64url"), offset: 0, participants: new Map(), owners: new Map() };
    rooms.set(name, state);
  }
  return state;
}

function broadcast(room, state, type, participant) {
  state.offset += 1;
  io.to(`room:${room}`).emit("presence", { type, participant, epoch: state.epoch, offset: state.offset, ts: Date.now() });
}

const http = createServer((req, res) => {
  if (req.url === "/healthz") {
    res.writeHead(200, { "content-type": "application/json" }).end('{"status":"ok"}');
  } else if (!req.url.startsWith("/socket.io/")) {
    res.writeHead(404).end();
  }
});
const io = new Server(http, { pingInterval: 3000, pingTimeout: 3000, maxHttpBufferSize: 1024 * 1024 });

io.use((socket, next) => {
  const claims = verify(socket.handshake.auth?.token);
  if (!claims) {
    const err = new Error("invalid token");
    err.data = { code: "unauthorized", message: "invalid token" };
    return next(err);
  }
  socket.data.claims = claims;
  next();
});

io.on("connection", (socket) => {
  const { sub: identity, room, name } = socket.data.claims;
  let joined = false;

  socket.on("join", (_data, ack) => {
    if (joined) return ack({ ok: false, error: { code: "conflict", message: "already joined" } });
    const state = roomState(room);
    const participant = {
      identity, name: name || identity, metadata: {}, joinedAt: Date.now(), transport: socket.conn.transport.name, tracks: [],
    };
    state.participants.set(identity, participant);
    state.owners.set(identity, socket.id);
    socket.join(`room:${room}`);
    joined = true;
    broadcast(room, state, "join", participant);
    ack({
      ok: true, room, self: participant, participants: [...state.participants.values()],
      epoch: state.epoch, offset: state.offset, iceServers: [],
    });
  });

  socket.on("update", (data, ack) => {
    const state = rooms.get(room);
    if (!joined || !state) return ack({ ok: false, error: { code: "conflict", message: "join the room first" } });
    const participant = { ...state.participants.get(identity) };
    if (typeof data?.name === "string") participant.name = data.name;
    if (data?.metadata && typeof data.metadata === "object") participant.metadata = data.metadata;
    state.participants.set(identity, participant);
    broadcast(room, state, "update", participant);
    ack({ ok: true, self: participant });
  });

  socket.on("signal", (data, ack) => {
    const state = rooms.get(room);
    const to = state?.owners.get(data?.to);
    if (!joined || !to) return ack({ ok: false, error: { code: "not_found", message: "no such participant" } });
    io.to(to).emit("signal", { from: identity, type: data.type, data: data.data });
    ack({ ok: true });
  });

  socket.on("disconnect", () => {
    const state = rooms.get(room);
    if (!joined || !state || state.owners.get(identity) !== socket.id) return;
    const participant = state.participants.get(identity);
    state.participants.delete(identity);
    state.owners.delete(identity);
    broadcast(room, state, "leave", participant);
  });
});

http.listen(Number(values.port), "127.0.0.1", () => console.log(`listening ${values.port}`));
