// An app of the official TypeScript SDK (v4), served by Node's http server, for
// tests/e2e/test_ts_sdk.py. The SDK checkpoints by default: it runs successive steps in
// one call and records them with POST {api}/v1/checkpoint/{run}/async.
//
// `node app.mjs PORT` (or PORT in the environment): where to listen; INNGEST_DEV=1 and
// INNGEST_BASE_URL=<server> point it at the server. GET /stats?run=<id> says how many call requests the server made for a run.
import http from "node:http";
import { Inngest } from "inngest";
import { serve } from "inngest/node";

const inngest = new Inngest({ id: "ts-app" });

// Attempts of the step that fails once, per run (the step's own retry state).
const flakyAttempts = new Map();

const steps = inngest.createFunction(
  { id: "steps", retries: 2, triggers: [{ event: "ts/steps" }] },
  async ({ event, step, runId }) => {
    const n = event.data.n ?? 1;
    const a = await step.run("a", () => n + 1);
    const b = await step.run("b", () => a * 2);
    const c = await step.run("c", () => `${b}!`);
    const flaky = await step.run("flaky", () => {
      const seen = (flakyAttempts.get(runId) ?? 0) + 1;
      flakyAttempts.set(runId, seen);
      if (seen === 1) throw new Error("flaky fails once");
      return seen;
    });
    await step.sleep("nap", "1s");
    const parallel = await Promise.all([
      step.run("p1", () => n * 10),
      step.run("p2", () => n * 20),
      step.run("p3", () => n * 30),
    ]);
    const after = await step.run("after", () => parallel.reduce((x, y) => x + y, 0));
    return { a, b, c, flaky, parallel, after };
  },
);

const sequence = inngest.createFunction(
  { id: "sequence", triggers: [{ event: "ts/sequence" }] },
  async ({ event, step }) => {
    let total = 0;
    for (let i = 0; i < event.data.count; i++) {
      total = await step.run(`s${i}`, () => total + i);
    }
    return { total };
  },
);

const handler = serve({ client: inngest, functions: [steps, sequence] });

// Call requests (POSTs from the server) per run, by the x-run-id header.
const calls = new Map();

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://localhost");
  if (url.pathname === "/stats") {
    const run = url.searchParams.get("run");
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ calls: run ? (calls.get(run) ?? 0) : null }));
    return;
  }
  if (url.pathname !== "/api/inngest") {
    res.statusCode = 404;
    res.end("not found");
    return;
  }
  const run = req.headers["x-run-id"];
  if (req.method === "POST" && typeof run === "string") {
    calls.set(run, (calls.get(run) ?? 0) + 1);
  }
  return handler(req, res);
});

server.listen(Number(process.argv[2] ?? process.env.PORT ?? 3939), "127.0.0.1");
