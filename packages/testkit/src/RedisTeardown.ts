/**
 * Vitest global setup: gives the test run its Redis key prefix, and at the end fails the run when
 * any key with that prefix is left (a test did not delete its keys), after deleting them.
 */
import { deleteByPrefix, testUrls } from "./Redis.ts"

export const setup = () => {
  process.env.BATON_TEST_REDIS_PREFIX = `baton-test:${Date.now().toString(36)}-${crypto.randomUUID().slice(0, 6)}:`
}

export const teardown = async () => {
  const prefix = process.env.BATON_TEST_REDIS_PREFIX ?? ""
  const left: Array<string> = []
  for (const url of testUrls()) {
    const n = await deleteByPrefix(url, prefix).catch((error: unknown) => {
      throw new Error(`cannot count the test run's Redis keys at ${url}: ${error instanceof Error ? error.message : String(error)}`)
    })
    if (n > 0) left.push(`${n} at ${url}`)
  }
  if (left.length > 0) throw new Error(`the tests left Redis keys behind (prefix ${prefix}): ${left.join(", ")}; deleted now`)
}
