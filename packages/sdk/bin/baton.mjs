#!/usr/bin/env node
// `baton <command>` for an app project that depends on @baton/sdk: the runtime's command line
// (runtime/src/cli.ts: start, new, ...) through runtime/bin/start.mjs, which checks Node's version
// first. Node runs this file from its real path in the Baton checkout (npm links a `file:`
// dependency), so the runtime is found beside it.
const cli = new URL("../../../runtime/src/cli.ts", import.meta.url)
process.argv.splice(2, 0, decodeURIComponent(cli.pathname))
await import(new URL("../../../runtime/bin/start.mjs", import.meta.url).href)
