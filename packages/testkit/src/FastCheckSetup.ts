/**
 * The vitest setup file (`vitest.config.ts` `setupFiles`) that sizes every property test whose
 * `fc.assert` names no `numRuns` of its own: fast-check's default 100 cases, or
 * `BATON_FC_RUNS` for a soak run (`BATON_FC_RUNS=2000 pnpm vitest run packages/core`), which is
 * how a counterexample that one random seed in a hundred CI runs would meet is found before CI
 * meets it. `BATON_FC_SEED` replays the seed a failure printed (with its `path`, in the test).
 */
import fc from "fast-check"

const integerOf = (name: string): number | undefined => {
  const raw = process.env[name]
  if (raw === undefined || raw === "") return undefined
  const value = Number(raw)
  if (!Number.isInteger(value) || (name === "BATON_FC_RUNS" && value < 1)) throw new Error(`${name} must be an integer${name === "BATON_FC_RUNS" ? " of at least 1" : ""}, got ${JSON.stringify(raw)}`)
  return value
}

const numRuns = integerOf("BATON_FC_RUNS")
const seed = integerOf("BATON_FC_SEED")
if (numRuns !== undefined || seed !== undefined) {
  fc.configureGlobal({ ...fc.readConfigureGlobal(), ...(numRuns === undefined ? {} : { numRuns }), ...(seed === undefined ? {} : { seed }) })
}
