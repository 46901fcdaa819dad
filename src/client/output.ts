/**
 * Where the CLI's words go. Without --json: everything on stdout, for a person. With --json:
 * exactly one JSON document on stdout (the command's result, or {error, exit}) and the human
 * lines on stderr, so that `kohakku-dr … --json | jq` works while the operator still sees progress.
 */
export interface Output {
  readonly json: boolean;
  /** Where `say` writes: stdout, or stderr with --json (a terminal or not decides how progress is drawn). */
  readonly humanStream: NodeJS.WriteStream;
  /** A line for a person. */
  say(line: string): void;
  /** The command's result: JSON on stdout with --json, else `human` (if given) for a person. */
  result(document: unknown, human?: () => string | string[]): void;
  /** A failure's line, always on stderr; with --json also the document on stdout. */
  error(message: string, document: unknown): void;
}

export function createOutput(options: { json: boolean }): Output {
  const { json } = options;
  let emitted = false;
  const emit = (document: unknown) => {
    // One document per run, whatever a command's path: the first one wins.
    if (emitted) return;
    emitted = true;
    process.stdout.write(JSON.stringify(document, null, 2) + '\n');
  };
  const humanStream = json ? process.stderr : process.stdout;
  return {
    json,
    humanStream,
    say: (line) => humanStream.write(line + '\n'),
    result(document, human) {
      if (json) return emit(document);
      const text = human ? human() : JSON.stringify(document, null, 2);
      process.stdout.write((Array.isArray(text) ? text.join('\n') : text) + '\n');
    },
    error(message, document) {
      process.stderr.write(`${message.startsWith('kohakku-dr:') ? '' : 'kohakku-dr: '}${message}\n`);
      if (json) emit(document);
    },
  };
}
