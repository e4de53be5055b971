/**
 * A production install works (issue #19): a fresh clone of HEAD, installed without devDependencies
 * (`pnpm install --prod --frozen-lockfile --offline`, from the local store), starts with
 * `pnpm start`'s command against PostgreSQL and reports ready. A dependency the runtime imports but
 * lists only among devDependencies fails it. It tests what is committed, not the working tree.
 */
import { describe, expect, it } from "vitest"
import { execFileSync, spawn } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { freshSchema } from "@baton/testkit/postgres"

const root = fileURLToPath(new URL("../..", import.meta.url))
// The pnpm that runs the tests (pnpm sets npm_execpath), else the one on PATH.
const pnpm = process.env.npm_execpath?.includes("pnpm") === true ? [process.execPath, process.env.npm_execpath] : ["pnpm"]

const run = (command: ReadonlyArray<string>, cwd: string, timeoutMs: number) => {
  try {
    execFileSync(command[0]!, command.slice(1), { cwd, timeout: timeoutMs, stdio: "pipe", encoding: "utf8" })
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; message: string }
    throw new Error(`${command.join(" ")} failed in ${cwd}: ${e.message}\n${e.stdout ?? ""}${e.stderr ?? ""}`)
  }
}

describe("a production install", () => {
  it("of a fresh clone starts against PostgreSQL and reports ready", { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "baton-install-"))
    const clone = join(dir, "baton")
    const schema = await freshSchema()
    try {
      const head = execFileSync("git", ["rev-parse", "HEAD"], { cwd: root, encoding: "utf8" }).trim()
      run(["git", "clone", "--quiet", "--no-checkout", root, clone], dir, 15_000)
      run(["git", "checkout", "--quiet", head], clone, 15_000)
      run([...pnpm, "install", "--prod", "--frozen-lockfile", "--offline", "--reporter=silent"], clone, 30_000)

      // `pnpm start`'s own command, with this Node.
      const start = (JSON.parse(readFileSync(join(clone, "package.json"), "utf8")) as { scripts: { start: string } }).scripts.start.split(" ")
      expect(start[0]).toBe("node")
      const child = spawn(process.execPath, start.slice(1), {
        cwd: clone,
        env: { ...process.env, BATON_DATABASE_URL: schema.url, BATON_MQTT_PORT: "0", BATON_WS_PORT: "off", BATON_HTTP_PORT: "0", BATON_DATA_DIR: join(dir, "data") },
        stdio: ["ignore", "pipe", "pipe"]
      })
      let output = ""
      child.stdout.on("data", (b: Buffer) => (output += b.toString()))
      child.stderr.on("data", (b: Buffer) => (output += b.toString()))
      const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
      try {
        const port = await new Promise<string>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`not ready within 20 s:\n${output}`)), 20_000)
          const check = () => {
            const m = output.match(/runtime ready .*http=(\d+)/)
            if (m !== null) {
              clearTimeout(timer)
              resolve(m[1]!)
            }
          }
          child.stdout.on("data", check)
          void exited.then((code) => reject(new Error(`exited with ${code} before it was ready:\n${output}`)))
        })
        expect(output).toContain("store opened kind=postgres")
        const health = await fetch(`http://127.0.0.1:${port}/healthz`)
        expect(health.status).toBe(200)
        expect(await health.json()).toMatchObject({ status: "ready" })
        child.kill("SIGTERM")
        expect(await exited, output).toBe(0)
      } finally {
        child.kill("SIGKILL")
      }
    } finally {
      await schema.drop()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
