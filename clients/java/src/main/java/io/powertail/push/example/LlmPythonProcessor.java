package io.powertail.push.example;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.powertail.push.ProcessPump;
import io.powertail.push.PushLogger;
import tech.powerjob.worker.core.processor.ProcessResult;
import tech.powerjob.worker.core.processor.TaskContext;
import tech.powerjob.worker.core.processor.sdk.BasicProcessor;

/**
 * The platform's model start-up processor with pushing: it launches a Python start script
 * with the run's JSON params ({@code modelName}, {@code modelPath}, {@code port}; also
 * {@code pythonBin} and {@code scriptPath}) as its one argument, and every line the script
 * prints goes to PowerJob's online log and to powertail ({@code POWERTAIL_URL},
 * {@code POWERTAIL_TOKEN}; without them, to PowerJob only).
 *
 * <p>The params are the job's params with the instance's over them (powertail's
 * {@code POST /llm/jobs/{name}/run} sends the merged object as {@code instanceParams}).
 * Register it as a Spring bean, or name the class in the PowerJob console.
 */
public class LlmPythonProcessor implements BasicProcessor {
    private static final ObjectMapper JSON = new ObjectMapper();

    /** Creates the processor. */
    public LlmPythonProcessor() {}

    @Override
    public ProcessResult process(TaskContext context) throws Exception {
        ObjectNode params = params(context);
        String model = params.path("modelName").asText("");
        try (PushLogger log = PushLogger.forTask(context)) {
            if (model.isEmpty() || !params.path("port").canConvertToInt()) {
                log.error("params need modelName and port, got {}", params);
                return new ProcessResult(false, "params need modelName and port");
            }
            String python = params.path("pythonBin").asText("python3");
            String script = params.path("scriptPath").asText("/opt/llm/scripts/start_vllm.py");
            log.info("start {} on port {}: {} {}", model, params.get("port").asInt(), python, script);
            int code = ProcessPump.of(log).run(new ProcessBuilder(python, script, JSON.writeValueAsString(params)));
            log.info("start script exited with code {}", code);
            return code == 0
                    ? new ProcessResult(true, model + " started successfully")
                    : new ProcessResult(false, "exit code " + code);
        }
    }

    /** The job's params with the instance's over them; text that is not an object is ignored. */
    static ObjectNode params(TaskContext context) {
        ObjectNode merged = JSON.createObjectNode();
        for (String text : new String[] {context.getJobParams(), context.getInstanceParams()}) {
            if (text == null || text.isBlank()) {
                continue;
            }
            try {
                JsonNode node = JSON.readTree(text);
                if (node instanceof ObjectNode o) {
                    merged.setAll(o);
                }
            } catch (java.io.IOException e) {
                // not JSON: no params from it
            }
        }
        return merged;
    }
}
