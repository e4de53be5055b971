declare module "aedes-persistence-level" {
  /** Aedes persistence on a `level` database (ships no types). */
  const persistence: (db: unknown) => unknown
  export default persistence
}
