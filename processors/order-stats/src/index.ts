/** The order-statistics counter: its app module (`./app`), and its events for tests and clients. */
import app from "./app.ts"

export * from "./app.ts"
export { app }

