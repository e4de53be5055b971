/** The trading advisor: its app module (`./app`), and its events and logic for tests and clients. */
import app from "./app.ts"

export * from "./app.ts"
export { app }

