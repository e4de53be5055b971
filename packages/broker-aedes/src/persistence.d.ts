declare module "aedes-persistence-level" {
  /** Aedes persistence on a `level` database (ships no types). */
  const persistence: (db: unknown) => unknown
  export default persistence
}

declare module "aedes-persistence-redis" {
  /** Aedes persistence on Redis through ioredis options (ships no types). */
  const persistence: (options: Record<string, unknown>) => unknown
  export default persistence
}
