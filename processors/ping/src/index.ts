/** The smallest app: its app module (`./app`), and its events for tests and clients. */
export * from "./app.ts"
export { default as app } from "./app.ts"
