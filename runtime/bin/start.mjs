#!/usr/bin/env node
// `node runtime/bin/start.mjs <file.ts> [args...]`: runs a TypeScript entry point (the runtime, the
// CLI, an example) once Node is recent enough. Plain JavaScript, so that an old Node gets here and
// says in one line what to install, instead of failing on the `.ts` extension.
import { readFileSync } from "node:fs"
import module from "node:module"
import { resolve } from "node:path"
import { pathToFileURL } from "node:url"

// The minimum is the one package.json declares (engines.node, ">=major.minor").
const engines = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")).engines.node
const [needMajor, needMinor] = engines.replace(/^>=\s*/, "").split(".").map(Number)
const [major, minor] = process.versions.node.split(".").map(Number)
if (major < needMajor || (major === needMajor && minor < (needMinor || 0))) {
  process.stderr.write(
    `Baton needs Node ${engines} and this is Node ${process.version}: install Node 24 LTS (https://nodejs.org, or npm i -g --prefix "$HOME/.node24" node@24 and put $HOME/.node24/bin first on PATH)\n`
  )
  process.exit(1)
}
const [, , entry] = process.argv
if (entry === undefined) {
  process.stderr.write("usage: node runtime/bin/start.mjs <file.ts> [args...]\n")
  process.exit(2)
}
// Compiled modules are cached on disk (Node's compile cache, in the system's temporary directory):
// a third less start-up time for every command of `pnpm baton`.
module.enableCompileCache?.()
// The entry point sees its own arguments from process.argv[2] on, as when run directly.
process.argv.splice(1, 2, resolve(entry))
await import(pathToFileURL(resolve(entry)).href)
