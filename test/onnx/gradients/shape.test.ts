import { defineCases } from './harness.js';
import { SHAPE } from './shape.cases.js';

defineCases(SHAPE);
