import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The directory envfleet is installed in (the one holding its package.json), found from this module's
 * own location, so the shipped fixtures are found from the TypeScript sources and from dist/ alike,
 * whatever the working directory.
 */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) || !existsSync(join(dir, 'fixtures'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`cannot find the envfleet package (package.json and fixtures/) above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
  return dir;
}

/** A path inside the package's fixtures/ directory. */
export const fixturesPath = (...parts: string[]) => join(packageRoot(), 'fixtures', ...parts);
