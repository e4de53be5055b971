import { Postgres, Sqlite, type Store } from "@baton/store"
import { freshSchema } from "@baton/testkit/postgres"

export interface Opened {
  readonly store: Store
  readonly close: () => Promise<void>
}

/** An empty store on each engine: SQLite in memory, PostgreSQL in a throw-away schema. */
export const engines: ReadonlyArray<readonly [name: string, open: () => Promise<Opened>]> = [
  [
    "SQLite",
    async () => {
      const store = await Sqlite.open({ path: ":memory:" })
      return { store, close: store.close }
    }
  ],
  [
    "PostgreSQL",
    async () => {
      const schema = await freshSchema()
      // Three connections: two transactions of the same message at once, and a read.
      const store = await Postgres.open({ url: schema.url, poolSize: 3 })
      return {
        store,
        close: async () => {
          await store.close()
          await schema.drop()
        }
      }
    }
  ]
]
