import { ELEMENTWISE } from './elementwise.cases.js';
import { defineCases } from './harness.js';

defineCases(ELEMENTWISE);
