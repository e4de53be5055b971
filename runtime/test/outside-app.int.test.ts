/**
 * A user's app outside this repository (issue 17): `pnpm baton new` creates the project in a
 * temporary directory, `npm install --offline` links @baton/sdk (its only dependency, a `file:`
 * link: no registry), `npm test` runs its property test with the testkit, and `npm start`
 * (`baton start --app ./src/app.ts`) runs it: an initiating event published with an MQTT client
 * comes back as its processing event.
 */
import { execFile, spawn } from "node:child_process"
import { existsSync, lstatSync, mkdtempSync, readFileSync, realpathSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { randomUUID } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { connect, collect } from "./support.ts"

const root = realpathSync(fileURLToPath(new URL("../..", import.meta.url)))
const bin = dirname(process.execPath)
// npm and the scripts' `node` are this Node's.
// As from a user's shell: not the INIT_CWD that `pnpm test` set for this process (a relative
// `--app` would resolve against it, as it does under `pnpm start`).
const { INIT_CWD: _, ...shell } = process.env
const env = { ...shell, PATH: `${bin}:${process.env.PATH ?? ""}`, BATON_MQTT_PORT: "0", BATON_HTTP_PORT: "0", BATON_WS_PORT: "off" }
const npm = existsSync(join(bin, "npm")) ? join(bin, "npm") : "npm"

const run = (file: string, args: ReadonlyArray<string>, cwd: string, timeoutMs: number) =>
  new Promise<{ code: number; output: string }>((resolve) => {
    execFile(file, [...args], { cwd, env, timeout: timeoutMs, encoding: "utf8" }, (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, output: `${stdout}${stderr}` })
    )
  })

describe("an app outside the workspace, on @baton/sdk", () => {
  const dir = mkdtempSync(join(tmpdir(), "baton-outside-"))
  const project = join(dir, "greetings")
  beforeAll(async () => {
    const created = await run(process.execPath, [join(root, "runtime/bin/start.mjs"), join(root, "runtime/src/cli.ts"), "new", project], dir, 20_000)
    expect(created.code, created.output).toBe(0)
    const installed = await run(npm, ["install", "--offline", "--no-audit", "--no-fund"], project, 30_000)
    expect(installed.code, installed.output).toBe(0)
  }, 60_000)
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it("is a project of its own, outside the workspace, linked to this checkout's @baton/sdk", () => {
    expect(realpathSync(project).startsWith(root)).toBe(false)
    const pkg = JSON.parse(readFileSync(join(project, "package.json"), "utf8")) as { dependencies: Record<string, string>; scripts: Record<string, string> }
    expect(pkg.dependencies).toEqual({ "@baton/sdk": `file:${join(root, "packages/sdk")}` })
    expect(pkg.scripts.start).toBe("baton start --app ./src/app.ts")
    expect(lstatSync(join(project, "node_modules/@baton/sdk")).isSymbolicLink()).toBe(true)
    expect(realpathSync(join(project, "node_modules/@baton/sdk"))).toBe(join(root, "packages/sdk"))
  })

  it("npm test: its property tests pass with the testkit", async () => {
    const tested = await run(npm, ["test"], project, 50_000)
    expect(tested.code, tested.output).toBe(0)
    expect(tested.output).toMatch(/# pass 2|ℹ pass 2/)
    expect(tested.output).toMatch(/# fail 0|ℹ fail 0/)
  }, 60_000)

  it("npm start: baton start --app runs it; a greet published over MQTT comes back greeted", async () => {
    // Its own process group, so that the runtime under npm and sh stops with it.
    const child = spawn(npm, ["start"], { cwd: project, env: { ...env, BATON_DATA_DIR: join(dir, "data") }, stdio: ["ignore", "pipe", "pipe"], detached: true })
    let output = ""
    child.stdout.on("data", (b: Buffer) => (output += b.toString()))
    child.stderr.on("data", (b: Buffer) => (output += b.toString()))
    // "close": every process holding its output (npm, sh, the runtime) has ended.
    const closed = new Promise<void>((resolve) => child.on("close", () => resolve()))
    try {
      const mqttPort = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`not ready within 30 s:\n${output}`)), 30_000)
        const check = () => {
          const m = /runtime ready .*mqtt=(\d+)/.exec(output)
          if (m !== null) {
            clearTimeout(timer)
            resolve(m[1]!)
          } else if (child.exitCode === null) setTimeout(check, 50)
          else reject(new Error(`exited before it was ready:\n${output}`))
        }
        check()
      })
      expect(output).toMatch(/apps running apps=greetings/)
      const client = await connect(`mqtt://127.0.0.1:${mqttPort}`)
      try {
        const events = await collect(client, ["events/#", "errors/#"])
        const id = randomUUID()
        await client.publishAsync("initiate/greet", JSON.stringify({ id, type: "greet", data: { name: "Ada" } }), { qos: 1 })
        await events.until((all) => all.some((r) => r.envelope.correlationId === id), 15_000, "the greeted event")
        const mine = events.received.filter((r) => r.envelope.correlationId === id)
        expect(mine.map((r) => [r.topic, r.envelope.type, r.envelope.causationId, r.envelope.data])).toEqual([
          ["events/greeted", "greeted", id, { name: "Ada", greeting: "Hello, Ada!", count: 1 }]
        ])
      } finally {
        await client.endAsync()
      }
    } finally {
      if (child.exitCode === null) process.kill(-child.pid!, "SIGTERM")
      await closed
    }
    expect(output).toMatch(/runtime stopped/)
  }, 60_000)

  it("baton start --app with a module that is not there: one line, exit code 1", async () => {
    const started = await run(join(project, "node_modules/.bin/baton"), ["start", "--app", "./src/missing.ts"], project, 20_000)
    expect(started.code).toBe(1)
    expect(started.output).toContain(`app './src/missing.ts': no module at ${join(project, "src/missing.ts")}`)
    expect(started.output).not.toMatch(/\n\s+at /)
  }, 30_000)

  it("baton new into a directory that is not empty: one line, exit code 2, nothing overwritten", async () => {
    const before = readFileSync(join(project, "src/app.ts"), "utf8")
    const again = await run(join(project, "node_modules/.bin/baton"), ["new", project], project, 20_000)
    expect(again.code).toBe(2)
    expect(again.output.trim()).toBe(`baton: ${project} is not empty: choose a new directory`)
    expect(readFileSync(join(project, "src/app.ts"), "utf8")).toBe(before)
  }, 30_000)
})
