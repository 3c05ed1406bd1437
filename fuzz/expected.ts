/**
 * The shape of fixtures/expected.json: what each fixture must give, per command. Written by
 * fuzz/make-fixtures.ts, read by test/fixtures.test.ts.
 */
export type FixtureCommand = 'cat' | 'read' | 'extract' | 'lib' | 'index' | 'info';

/**
 * `error`: a clean error whose message matches this pattern (case-insensitive; '' for any).
 * `sha256`: exit 0 with exactly these bytes ('' for "exit 0", for index), or with `orError` a
 * clean refusal. `safe`: no crash, and on exit 0 the stated uncompressed size is `size`.
 */
export type Expect = { error: string } | { sha256: string; orError?: boolean } | { safe: true; size: number };

export interface Fixture {
  file: string;
  /** A sidecar index beside `file`, under the name seekz looks for. */
  sidecar?: string;
  why: string;
  /** What the real tool says about the file. */
  tool: string;
  /** The original uncompressed size: read and extract ask for [0, size). */
  size: number;
  expect: Partial<Record<FixtureCommand, Expect>>;
}
