import { defineCases } from './harness.js';
import { LINEAR } from './linear.cases.js';

defineCases(LINEAR);
