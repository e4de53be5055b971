/**
 * `pnpm baton new <dir>`: a standalone app project, outside this repository, on the public API
 * only: `@baton/sdk` through a `file:` link to this checkout's packages/sdk (npm links it, so the
 * TypeScript runs from here, not from node_modules, where Node would not strip its types). One
 * processor, one workflow, a property test with the testkit (`node --test`), a README.
 */
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs"
import { basename, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"

/** This checkout's public package, which the project depends on. */
export const sdkPath = fileURLToPath(new URL("../../packages/sdk", import.meta.url))

export class ScaffoldError extends Error {
  override readonly name = "ScaffoldError"
}

/** An npm package name from the directory's name: lower case, `-` for anything else. */
const packageName = (dir: string): string =>
  basename(dir).toLowerCase().replace(/[^a-z0-9._-]+/g, "-").replace(/^[._-]+/, "").slice(0, 214) || "baton-app"

const app = `/**
 * A Baton app. Clients publish \`greet\` on initiate/greet; the \`greeter\` processor counts the
 * greetings of each name in the app's table and announces \`greeted\` on events/greeted.
 * In the mediator topology (BATON_TOPOLOGY=mediator) the \`greet\` workflow sends the same
 * processor a command instead, and tracks it until it is done.
 */
import { Baton, Schema, SqlClient, type Workflow } from "@baton/sdk"

export const Greet = Baton.initiating(
  "greet",
  Schema.Struct({ name: Schema.NonEmptyString.check(Schema.isMaxLength(40)), polite: Schema.optionalKey(Schema.Boolean) }),
  // Greetings of one name are processed in order.
  { key: (greet) => greet.name }
)

export const Greeted = Baton.event("greeted", Schema.Struct({ name: Schema.String, greeting: Schema.String, count: Schema.Int }))

const greeter = Baton.processor({
  name: "greeter",
  on: Greet,
  // Runs in the transaction that records the message as processed: counted once per greeting.
  // A generator function, \`event\` typed by \`on\`: the SDK makes it into an Effect function once, not
  // per message (unlike \`(event) => Effect.gen(function* () {...})\`, some microseconds a call).
  handle: function* (event) {
    const sql = yield* SqlClient.SqlClient
    const { name, polite } = event.data
    yield* sql\`INSERT INTO greetings (name, count) VALUES (\${name}, 1) ON CONFLICT (name) DO UPDATE SET count = greetings.count + 1\`
    const rows = yield* sql<{ readonly count: number }>\`SELECT count FROM greetings WHERE name = \${name}\`
    const greeting = polite === true ? \`Good day, \${name}.\` : \`Hello, \${name}!\`
    return [Greeted.make({ name, greeting, count: Number(rows[0]!.count) })]
  }
})

/** The mediator topology: one step, one command to the greeter's channel. */
const greeting: Workflow.Workflow = {
  name: "greet",
  domain: "greeting",
  steps: [{ name: "greet", commands: [{ name: "greet", channel: "greeter", type: Greet.type, data: (d) => d.input }] }]
}

export default Baton.app({
  name: "greetings",
  initiating: [Greet],
  events: [Greeted],
  migrations: [{ name: "greetings-1", sql: "CREATE TABLE greetings (name TEXT PRIMARY KEY, count INTEGER NOT NULL)" }],
  processors: [greeter],
  mediation: { rules: [{ type: Greet.type, kind: "hard", workflow: greeting.name }], workflows: [greeting] }
})
`

const test = `/**
 * Property tests with the testkit: the app runs in this process on the real runtime (embedded
 * broker, SQLite in a temporary directory, ephemeral ports); fast-check makes the greetings.
 */
import assert from "node:assert/strict"
import { after, before, test } from "node:test"
import { Testkit, fc, type App } from "@baton/sdk/testkit"
import app, { Greet, Greeted } from "../src/app.ts"

const countOf = async (kit: App, name: string): Promise<number> => Number((await kit.query("SELECT count FROM greetings WHERE name = ?", name))[0]?.count ?? 0)

let kit: App
before(async () => {
  kit = await Testkit.start(app)
})
after(async () => {
  await kit.stop()
})

test("every greeting is greeted once, and counted once", async () => {
  await fc.assert(
    fc.asyncProperty(Testkit.arbitrary(Greet), async (greet) => {
      const before = await countOf(kit, greet.name)
      // Without \`until\`: once the flow is settled, so that a duplicate would be in it.
      const flow = await kit.flow(await kit.publish(Greet, greet))
      const greeted = flow.data(Greeted)
      assert.equal(greeted.length, 1, \`one greeted event, got \${flow.events.map((e) => e.type).join(", ")}\`)
      assert.equal(greeted[0]!.name, greet.name)
      assert.equal(greeted[0]!.count, before + 1)
      assert.equal(flow.cause(flow.byType(Greeted)[0]!)?.type, Greet.type)
      assert.equal(await countOf(kit, greet.name), before + 1)
    }),
    { numRuns: 10 }
  )
})

test("the mediator topology: the greet workflow completes once, the greeting counted once", async () => {
  const mediated = await Testkit.start(app, { topology: "mediator" })
  try {
    await fc.assert(
      fc.asyncProperty(Testkit.arbitrary(Greet), async (greet) => {
        const before = await countOf(mediated, greet.name)
        const flow = await mediated.flow(await mediated.publish(Greet, greet))
        assert.equal(flow.count("workflow-completed"), 1)
        assert.equal(await countOf(mediated, greet.name), before + 1)
      }),
      { numRuns: 5 }
    )
  } finally {
    await mediated.stop()
  }
})
`

const readme = (name: string) => `# ${name}

A [Baton](${resolve(sdkPath, "../..")}) app: clients publish \`greet\` events over MQTT, the
\`greeter\` processor counts them per name and announces \`greeted\`.

- \`src/app.ts\`: the app, on \`@baton/sdk\` only: its events (each with an Effect Schema), one
  processor (broker topology) and one workflow (mediator topology, \`BATON_TOPOLOGY=mediator\`).
- \`test/app.test.ts\`: property tests (both topologies) with \`@baton/sdk/testkit\`: the real runtime in process,
  greetings generated from the event's schema by fast-check.

\`\`\`sh
npm install            # links @baton/sdk from the Baton checkout (no download)
npm test               # node --test: the property tests
npm start              # baton start --app ./src/app.ts: MQTT on 1883, HTTP on 8080
\`\`\`

Ports and everything else are set by the runtime's BATON_* variables (\`BATON_MQTT_PORT\`,
\`BATON_HTTP_PORT\`, \`BATON_DATA_DIR\`, ...; see the Baton README). Then, with any MQTT client:

\`\`\`sh
mosquitto_sub -t 'events/#' -v &
mosquitto_pub -q 1 -t initiate/greet -m '{"name":"Ada"}'
\`\`\`

Node 22.19 or later runs the TypeScript as it is (type stripping): use \`import type\` for types.
`

/** Writes the project into `dir` (created; it must be empty or absent); returns the files written. */
export const scaffold = (dir: string): ReadonlyArray<string> => {
  const root = resolve(dir)
  if (existsSync(root) && readdirSync(root).length > 0) throw new ScaffoldError(`${root} is not empty: choose a new directory`)
  const name = packageName(root)
  const files: Record<string, string> = {
    "package.json": `${JSON.stringify(
      {
        name,
        version: "0.1.0",
        private: true,
        type: "module",
        engines: { node: ">=22.19" },
        scripts: { start: "baton start --app ./src/app.ts", test: "node --test test/app.test.ts" },
        dependencies: { "@baton/sdk": `file:${sdkPath}` }
      },
      null,
      2
    )}\n`,
    "src/app.ts": app,
    "test/app.test.ts": test,
    "README.md": readme(name),
    ".gitignore": "node_modules\n.baton-data\n"
  }
  for (const [file, text] of Object.entries(files)) {
    mkdirSync(join(root, file, ".."), { recursive: true })
    writeFileSync(join(root, file), text)
  }
  return Object.keys(files).map((f) => join(root, f))
}
