import { NetrootError } from '../errors.js';

/** The lab could not be set up, or a program it runs failed. Exit 1. */
export class LabError extends NetrootError {}
