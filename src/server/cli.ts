/**
 * Administration from the command line, with the same configuration as the server:
 *   tsx src/server/cli.ts migrate                 apply pending migrations and exit (npm run db:migrate)
 *   tsx src/server/cli.ts create-user NAME [--admin]   create a user and print its first API key once
 */
import { loadConfig } from './config.js';
import { openDatabase } from './db/database.js';
import { generateApiKey, newId } from './ids.js';
import { createRepositories } from './repositories/index.js';

async function run(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  const positional = rest.filter((a) => !a.startsWith('--'));
  const admin = rest.includes('--admin');
  const config = loadConfig(process.env, rest.filter((a) => a.startsWith('--') && a !== '--admin'));
  if (command !== 'migrate' && command !== 'create-user') {
    throw new Error('usage: cli.ts migrate | create-user NAME [--admin]');
  }
  const db = await openDatabase(config.databaseUrl, { log: (m) => process.stdout.write(`${m}\n`) });
  try {
    if (command === 'migrate') {
      process.stdout.write(`database up to date (${db.migrations.applied.length} applied now, ${db.migrations.skipped.length} before)\n`);
      return;
    }
    const name = positional[0];
    if (!name) throw new Error('usage: cli.ts create-user NAME [--admin]');
    const repos = createRepositories(db);
    const user = await repos.users.create({ id: newId('usr'), name, isAdmin: admin });
    const { key, prefix, hash } = generateApiKey();
    await repos.users.createKey({ id: newId('key'), userId: user.id, name: 'cli', prefix, hash });
    process.stdout.write(`user ${user.name} (${user.id})${admin ? ', admin' : ''}\nAPI key (shown once): ${key}\n`);
  } finally {
    await db.close();
  }
}

run(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(1);
});
