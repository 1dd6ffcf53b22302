import { defineCases } from './harness.js';
import { REDUCE } from './reduce.cases.js';

defineCases(REDUCE);
