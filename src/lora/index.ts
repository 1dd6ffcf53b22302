/** Public surface of src/lora: adapters as data and their merge into the base graph. */
export { mergeAdapters } from './merge.js';
export type { AdapterMatrices } from './merge.js';
