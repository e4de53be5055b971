/** A throw-away PostgreSQL schema on this machine's server, for tests of `BATON_DATABASE_URL`. */
import pg from "pg"

export const serverUrl = process.env.BATON_TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/postgres"

export const freshSchema = async (): Promise<{ readonly url: string; readonly drop: () => Promise<void> }> => {
  const schema = `baton_t_${Math.random().toString(36).slice(2, 10)}`
  const admin = new pg.Client({ connectionString: serverUrl })
  await admin.connect()
  await admin.query(`CREATE SCHEMA ${schema}`)
  await admin.end()
  const sep = serverUrl.includes("?") ? "&" : "?"
  return {
    url: `${serverUrl}${sep}options=${encodeURIComponent(`-c search_path=${schema}`)}`,
    drop: async () => {
      const c = new pg.Client({ connectionString: serverUrl })
      await c.connect()
      await c.query(`DROP SCHEMA ${schema} CASCADE`)
      await c.end()
    }
  }
}

export const query = async <R extends pg.QueryResultRow>(url: string, sql: string, params: ReadonlyArray<unknown> = []): Promise<ReadonlyArray<R>> => {
  const c = new pg.Client({ connectionString: url })
  await c.connect()
  try {
    return (await c.query<R>(sql, [...params])).rows
  } finally {
    await c.end()
  }
}

/** One connection for many queries (a sampler's: `query` opens one a call), closed by `end`. */
export const session = async (url: string) => {
  const c = new pg.Client({ connectionString: url })
  await c.connect()
  return {
    query: async <R extends pg.QueryResultRow>(sql: string, params: ReadonlyArray<unknown> = []): Promise<ReadonlyArray<R>> => (await c.query<R>(sql, [...params])).rows,
    end: () => c.end()
  }
}

/**
 * A throw-away database on this machine's server (from `template0`), for a benchmark whose
 * figures must not depend on what other clients of the `postgres` database did before it (their
 * schemas' dead catalog rows; `pg_stat_database` counts only this database's clients).
 */
export const freshDatabase = async (): Promise<{ readonly url: string; readonly drop: () => Promise<void> }> => {
  const name = `baton_d_${Math.random().toString(36).slice(2, 10)}`
  await query(serverUrl, `CREATE DATABASE ${name} TEMPLATE template0`)
  const url = new URL(serverUrl)
  url.pathname = `/${name}`
  return {
    url: url.toString(),
    drop: async () => void (await query(serverUrl, `DROP DATABASE ${name} WITH (FORCE)`))
  }
}
