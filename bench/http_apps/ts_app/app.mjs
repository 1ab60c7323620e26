// The benchmark functions (bench/functions.py) on the official TypeScript SDK (v4),
// served by Node's http server: system "inngest-ts-http". Step for step as the Python
// apps: (a) `seq`, n sequential steps; (b) `fan`, n parallel steps then a join;
// (c) `one`, a one-step run. The SDK checkpoints by default (protocol §13).
//
// `node app.mjs PORT`, with INNGEST_DEV=1 and INNGEST_BASE_URL=<server>;
// bench/http_apps/ts_runner.py does that. Serves /api/inngest.
import http from "node:http";
import { Inngest } from "inngest";
import { serve } from "inngest/node";

const inngest = new Inngest({ id: "bench-ts" });

const trivial = async (i) => i;

const seq = inngest.createFunction(
  { id: "seq", triggers: [{ event: "bench/seq" }] },
  async ({ event, step }) => {
    let total = 0;
    for (let i = 0; i < event.data.n; i++) {
      total += await step.run(`s${i}`, () => trivial(i));
    }
    return total;
  },
);

const fan = inngest.createFunction(
  { id: "fan", triggers: [{ event: "bench/fan" }] },
  async ({ event, step }) => {
    const steps = [];
    for (let i = 0; i < event.data.n; i++) {
      steps.push(step.run(`p${i}`, () => trivial(i)));
    }
    const results = await Promise.all(steps);
    return results.reduce((x, y) => x + y, 0);
  },
);

const one = inngest.createFunction(
  { id: "one", triggers: [{ event: "bench/one" }] },
  async ({ event, step }) => step.run("s0", () => trivial(event.data.i)),
);

const handler = serve({ client: inngest, functions: [seq, fan, one] });

http
  .createServer((req, res) => {
    if (new URL(req.url, "http://localhost").pathname !== "/api/inngest") {
      res.statusCode = 404;
      res.end("not found");
      return;
    }
    return handler(req, res);
  })
  .listen(Number(process.argv[2] ?? process.env.PORT ?? 3940), "127.0.0.1");
