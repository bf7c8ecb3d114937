// A consumer of Choria's autonomous-agent events, as one would write it
// against Choria's documentation: it subscribes to choria.machine.>, reads
// each message as a structured-mode CloudEvent with the CloudEvents SDK,
// and checks the fields Choria's events carry. It prints one JSON line per
// event ({subject, type, machine, name, transition, from, to, outcome,
// problems}) and exits after MMS_EVENTS events or MMS_SECONDS seconds.
//
// Usage: node consumer.mjs NATS_URL [NKEY_SEED_FILE CA_FILE] (user and
// password may be in the URL; an mms agent's embedded server wants its
// nkey seed and its pinned certificate, the files its nats-context.json
// names).
import { readFileSync } from "node:fs";
import { connect, nkeyAuthenticator, StringCodec } from "nats";
import { CloudEvent } from "cloudevents";

const [, , server, seedFile, caFile] = process.argv;
const url = new URL(server);
const want = Number(process.env.MMS_EVENTS || "1000000");
const seconds = Number(process.env.MMS_SECONDS || "60");

const opts = {
  servers: `${url.protocol}//${url.host}`,
  user: decodeURIComponent(url.username) || undefined,
  pass: decodeURIComponent(url.password) || undefined,
};
if (seedFile) opts.authenticator = nkeyAuthenticator(new TextEncoder().encode(readFileSync(seedFile, "utf8").trim()));
if (caFile) opts.tls = { caFile };
const nc = await connect(opts);
const sc = StringCodec();
const sub = nc.subscribe("choria.machine.>");
await nc.flush(); // the server has the subscription before we say ready
console.log(JSON.stringify({ ready: true }));

const watcherType = /^io\.choria\.machine\.watcher\.([a-z][a-z0-9_]*)\.v1\.state$/;
const common = ["protocol", "identity", "id", "version", "timestamp", "machine"];

setTimeout(() => sub.unsubscribe(), seconds * 1000);
let n = 0;
for await (const m of sub) {
  const problems = [];
  let ce;
  try {
    // The SDK validates the CloudEvents attributes (specversion, id,
    // source, type, time) when it builds the event.
    ce = new CloudEvent(JSON.parse(sc.decode(m.data)));
  } catch (e) {
    console.log(JSON.stringify({ subject: m.subject, problems: [`not a CloudEvent: ${e}`] }));
    continue;
  }
  const d = ce.data || {};
  if (ce.specversion !== "1.0") problems.push(`specversion ${ce.specversion}`);
  if (ce.source !== "io.choria.machine") problems.push(`source ${ce.source}`);
  if (ce.datacontenttype !== "application/json") problems.push(`datacontenttype ${ce.datacontenttype}`);
  if (!ce.subject) problems.push("no subject (the node identity)");
  for (const f of common) if (d[f] === undefined || d[f] === "") problems.push(`data.${f} missing`);
  if (d.protocol !== ce.type) problems.push(`data.protocol ${d.protocol} != type ${ce.type}`);
  if (d.identity !== ce.subject) problems.push(`data.identity ${d.identity} != subject ${ce.subject}`);
  if (!Number.isInteger(d.timestamp)) problems.push(`data.timestamp ${d.timestamp} is not unix seconds`);
  const out = { subject: m.subject, type: ce.type, machine: d.machine, problems };
  if (ce.type === "io.choria.machine.v1.transition") {
    if (m.subject !== "choria.machine.transition") problems.push(`transition on ${m.subject}`);
    for (const f of ["transition", "from_state", "to_state"]) if (typeof d[f] !== "string") problems.push(`data.${f} missing`);
    Object.assign(out, { transition: d.transition, from: d.from_state, to: d.to_state });
  } else {
    const t = watcherType.exec(ce.type);
    if (!t) problems.push(`unknown type ${ce.type}`);
    else {
      if (m.subject !== `choria.machine.watcher.${t[1]}.state`) problems.push(`${ce.type} on ${m.subject}`);
      if (d.type !== t[1]) problems.push(`data.type ${d.type} != ${t[1]}`);
    }
    if (typeof d.name !== "string") problems.push("data.name missing");
    Object.assign(out, { name: d.name, outcome: d.previous_outcome });
  }
  console.log(JSON.stringify(out));
  if (++n >= want) break;
}
await nc.close();
