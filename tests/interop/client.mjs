// The official socket.io-client, remote-controlled by tests/interop/test_node_client.py.
//
// Commands arrive on stdin, one JSON object per line; everything the client sees goes to
// stdout, one JSON object per line, so the Python test can assert on exactly what Node got:
//   {"op": "connect", "url", "path", "token"?, "transports"}  -> {"event": "connect", "transport"}
//                                                               or {"event": "connect_error", "message", "data"}
//   {"op": "emit", "id", "event", "data"}                     -> {"id", "ack"} (or {"id", "error"})
//   {"op": "close"}                                           -> disconnects and exits
// Server events (presence, signal, message, kicked) are printed as {"event", "data"}.
import readline from "node:readline";
import { io } from "socket.io-client";

const SERVER_EVENTS = ["presence", "signal", "message", "kicked"];
const ACK_TIMEOUT_MS = 5000;

let socket = null;

function print(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function connect({ url, path, token, transports }) {
  socket = io(url, {
    path,
    auth: token === undefined || token === null ? {} : { token },
    transports,
    reconnection: false,
    forceNew: true,
    timeout: ACK_TIMEOUT_MS,
  });
  socket.on("connect", () => print({ event: "connect", transport: socket.io.engine.transport.name }));
  // err.data is what the server's ConnectionRefusedError carried: the protocol's {code, message}.
  socket.on("connect_error", (err) => print({ event: "connect_error", message: err.message, data: err.data ?? null }));
  socket.on("disconnect", (reason) => print({ event: "disconnect", reason }));
  for (const name of SERVER_EVENTS) {
    socket.on(name, (data) => print({ event: name, data }));
  }
}

async function emit({ id, event, data }) {
  try {
    const ack = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck(event, data ?? {});
    print({ id, ack });
  } catch (err) {
    print({ id, error: String(err) });
  }
}

function close() {
  if (socket) socket.disconnect();
  // Let the close packet leave before the process goes.
  setTimeout(() => process.exit(0), 50);
}

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const command = JSON.parse(line);
  if (command.op === "connect") connect(command);
  else if (command.op === "emit") emit(command);
  else if (command.op === "close") close();
  else print({ event: "bad_command", command });
});
lines.on("close", close);
print({ event: "ready", version: process.version });
