/** The script tag's entry (`relay.js`): reads its own tag, so it must run as a classic script. */
import { boot } from "./boot.ts";

boot();
