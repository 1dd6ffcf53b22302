/** Public surface of src/server: the app, its start-up, configuration and database. */
export { appPlugin, buildApp, createContext, type App, type AppConfig, type AppContext, type AppDeps } from './app.js';
export { loadConfig, describeConfig, databaseProvider, ConfigSchema, CONFIG_SOURCES, type Config } from './config.js';
export { createServer, type Server, type ServerOptions } from './server.js';
export { openDatabase, type Database, type Db } from './db/database.js';
export { migrate, readMigrations, migrationChecksum, defaultMigrationsDir, type MigrationFile, type MigrationReport } from './db/migrate.js';
export { toErrorResponse, errorHandler } from './error-handler.js';
export { HTTP_STATUS } from './errors.js';
