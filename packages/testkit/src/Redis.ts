/**
 * Redis for tests: each test keeps its keys under a prefix of its own (`?prefix=` on
 * BATON_REDIS_URL) and deletes them by that prefix afterwards; every prefix starts with the test
 * run's, so that the run's global teardown can count what a test left behind.
 */
import { Redis } from "ioredis"

/** The prefix of this test run's keys (the global setup sets it). */
export const runPrefix = (): string => process.env.BATON_TEST_REDIS_PREFIX ?? "baton-test:"

/** The Redis databases tests use: sessions, the cluster tests, the benchmarks' smoke runs. */
export const testUrls = (): ReadonlyArray<string> => [
  ...new Set([
    process.env.BATON_TEST_REDIS_URL ?? "redis://127.0.0.1:6379/3",
    process.env.BATON_TEST_CLUSTER_REDIS_URL ?? "redis://127.0.0.1:6379/4",
    process.env.BATON_BENCH_REDIS_URL ?? "redis://127.0.0.1:6379/6"
  ])
]

const open = (url: string): Redis => {
  const u = new URL(url)
  u.search = ""
  // Fail at once when Redis is away, rather than retry for ever.
  return new Redis(u.toString(), { maxRetriesPerRequest: 1, connectTimeout: 3000, retryStrategy: () => null, lazyConnect: true })
}

/** The keys of a database that start with `prefix` (letters, digits, `-` and `:` only). */
export const keys = async (url: string, prefix: string): Promise<ReadonlyArray<string>> => {
  if (!/^[A-Za-z0-9:-]+$/.test(prefix)) throw new Error(`not a test prefix: '${prefix}'`)
  const redis = open(url)
  try {
    await redis.connect()
    const found: Array<string> = []
    for await (const batch of redis.scanStream({ match: `${prefix}*`, count: 1000 })) found.push(...(batch as Array<string>))
    return found
  } finally {
    redis.disconnect()
  }
}

/** Deletes the keys that start with `prefix`; resolves with how many there were. */
export const deleteByPrefix = async (url: string, prefix: string): Promise<number> => {
  const found = await keys(url, prefix)
  if (found.length === 0) return 0
  const redis = open(url)
  try {
    await redis.connect()
    for (let i = 0; i < found.length; i += 500) await redis.del(...found.slice(i, i + 500))
  } finally {
    redis.disconnect()
  }
  return found.length
}

/** `url` with a key prefix unique to one test, and the deletion of its keys. */
export const scoped = (url: string): { readonly url: string; readonly prefix: string; readonly clean: () => Promise<number> } => {
  const prefix = `${runPrefix()}${crypto.randomUUID().slice(0, 8)}:`
  const u = new URL(url)
  u.searchParams.set("prefix", prefix)
  return { url: u.toString(), prefix, clean: () => deleteByPrefix(url, prefix) }
}
