import { CONV } from './conv.cases.js';
import { defineCases } from './harness.js';

defineCases(CONV);
