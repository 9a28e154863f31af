import { readConfigFile } from "./target/config_file.ts";
try { console.log(readConfigFile(Deno.args[0])); } catch (e) { console.log(e.message); }
