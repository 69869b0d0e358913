// What the server processes share with the bench. No dependencies: a server process must not load
// autocannon, a framework it does not use, or the bench's signal handlers.
export const HOST = '127.0.0.1'

/** The CPU-bound route computes fib(CPU_FIB) per request. */
export const CPU_FIB = Number(process.env.CPU_FIB ?? 25)

export function fib(n) {
  return n < 2 ? n : fib(n - 1) + fib(n - 2)
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Prints one JSON line on stdout: how a server process talks to the bench. */
export function say(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`)
}
