import { BROADCAST } from './broadcast.cases.js';
import { defineCases } from './harness.js';

defineCases(BROADCAST);
