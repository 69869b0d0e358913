/**
 * Whole lines from every worker, written by one process. Workers that share the primary's stdout or
 * stderr pipe each write there themselves, and a line longer than the pipe's atomic size (4 KiB)
 * can be split by another worker's write: one JSON log line becomes two broken ones. So when the
 * primary's stream is a pipe or a file, each worker's stream is piped to the primary, cut into
 * complete lines here, and the primary is the single writer. A terminal keeps direct output (colors,
 * isTTY), where a person reads, not a parser.
 */
import type { Readable, Writable } from 'node:stream'

/** A line longer than this (a runaway write without a newline) is passed on as it is. */
export const MAX_LINE_BYTES = 1024 * 1024

/** Cuts a byte stream into complete lines; `push` returns what is complete (with its newlines). */
export class LineSplitter {
  #pending: Buffer[] = []
  #pendingBytes = 0

  push(chunk: Buffer): Buffer | undefined {
    const last = chunk.lastIndexOf(0x0a)
    if (last < 0) {
      this.#pending.push(chunk)
      this.#pendingBytes += chunk.length
      return this.#pendingBytes >= MAX_LINE_BYTES ? this.end() : undefined
    }
    const complete = Buffer.concat([...this.#pending, chunk.subarray(0, last + 1)])
    const rest = chunk.subarray(last + 1)
    this.#pending = rest.length > 0 ? [rest] : []
    this.#pendingBytes = rest.length
    return complete
  }

  /** What is left: a last line without its newline. */
  end(): Buffer | undefined {
    if (this.#pendingBytes === 0) return undefined
    const rest = Buffer.concat(this.#pending)
    this.#pending = []
    this.#pendingBytes = 0
    return rest
  }
}

/** Copies `from` to `to` in whole lines, each chunk of lines with one write. */
export function relayLines(from: Readable, to: Writable): void {
  const lines = new LineSplitter()
  from.on('data', (chunk: Buffer) => {
    const out = lines.push(chunk)
    if (out) to.write(out)
  })
  from.on('end', () => {
    const rest = lines.end()
    if (rest) to.write(rest)
  })
  from.on('error', () => {}) // the worker died; what it wrote before is already relayed
}

/** `'pipe'` for a stream the primary should relay (a pipe or a file), `'inherit'` for a terminal. */
export function stdioFor(stream: NodeJS.WriteStream): 'pipe' | 'inherit' {
  return stream.isTTY ? 'inherit' : 'pipe'
}
