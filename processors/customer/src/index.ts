/** The customer reference app: the app module (`./app`) and its parts. */

export * from "./app.ts"
export { default as app } from "./app.ts"
