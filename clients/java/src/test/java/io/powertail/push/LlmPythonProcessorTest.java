package io.powertail.push;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import io.powertail.push.example.LlmPythonProcessor;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import tech.powerjob.worker.core.processor.ProcessResult;
import tech.powerjob.worker.core.processor.TaskContext;

/** The example processor with a real Python start script (python3 on the PATH). */
@Timeout(60)
class LlmPythonProcessorTest {
    private static final String SCRIPT = String.join("\n",
            "import json, sys",
            "p = json.loads(sys.argv[1])",
            "print(f\"[INFO] start {p['modelName']} from {p['modelPath']} on port {p['port']}\", flush=True)",
            "print('INFO 11-25 10:00:03 [api_server.py:1839] Application startup complete.', file=sys.stderr, flush=True)",
            "sys.exit(p.get('exitCode', 0))",
            "");

    private static TaskContext context(RecordingOmsLogger oms, Path script, String instanceParams) {
        TaskContext ctx = new TaskContext();
        ctx.setInstanceId(677182124851200064L);
        ctx.setOmsLogger(oms);
        ctx.setJobParams("{\"modelName\": \"qwen-7b\", \"modelPath\": \"/data/models/qwen-7b\", \"port\": 8000,"
                + " \"pythonBin\": \"python3\", \"scriptPath\": \"" + script + "\"}");
        ctx.setInstanceParams(instanceParams);
        return ctx;
    }

    @Test
    void runs_the_start_script_with_the_merged_params_and_pushes_what_it_prints(@TempDir Path dir) throws Exception {
        Path script = Files.writeString(dir.resolve("start_vllm.py"), SCRIPT);
        try (RecordingServer server = new RecordingServer()) {
            RecordingOmsLogger oms = new RecordingOmsLogger();
            System.setProperty("powertail.url", server.url());
            ProcessResult result;
            try {
                result = new LlmPythonProcessor().process(context(oms, script, "{\"port\": 8001}"));
            } finally {
                System.clearProperty("powertail.url");
            }
            assertTrue(result.isSuccess(), result.getMsg());
            assertEquals("qwen-7b started successfully", result.getMsg());
            List<String> lines = oms.lines();
            assertEquals(4, lines.size(), lines.toString());
            assertEquals("INFO start qwen-7b on port 8001: python3 " + script, lines.get(0));
            // stdout and stderr are two pipes: their lines interleave as they come.
            assertEquals(Set.of(
                    "INFO [INFO] start qwen-7b from /data/models/qwen-7b on port 8001",
                    "INFO INFO 11-25 10:00:03 [api_server.py:1839] Application startup complete."),
                    Set.copyOf(lines.subList(1, 3)));
            assertEquals("INFO start script exited with code 0", lines.get(3));
            List<String> pushed = new ArrayList<>();
            for (JsonNode b : server.accepted()) {
                b.path("lines").forEach(l -> pushed.add(l.path("level").asText() + " " + l.path("text").asText()));
            }
            assertEquals(oms.lines(), pushed);
            assertEquals("/llm/logs/677182124851200064/append", server.requests().get(0).path());
            assertTrue(server.accepted().get(server.accepted().size() - 1).path("final").asBoolean());
        }
    }

    @Test
    void a_failing_script_fails_the_task_with_its_exit_code(@TempDir Path dir) throws Exception {
        Path script = Files.writeString(dir.resolve("start_vllm.py"), SCRIPT);
        RecordingOmsLogger oms = new RecordingOmsLogger();
        ProcessResult result = new LlmPythonProcessor().process(context(oms, script, "{\"exitCode\": 2}"));
        assertFalse(result.isSuccess());
        assertEquals("exit code 2", result.getMsg());
        assertEquals("INFO start script exited with code 2", oms.lines().get(oms.lines().size() - 1));
    }

    @Test
    void params_without_a_model_fail_the_task_without_running_anything() throws Exception {
        RecordingOmsLogger oms = new RecordingOmsLogger();
        TaskContext ctx = new TaskContext();
        ctx.setInstanceId(1L);
        ctx.setOmsLogger(oms);
        ctx.setJobParams("not json");
        ProcessResult result = new LlmPythonProcessor().process(ctx);
        assertFalse(result.isSuccess());
        assertEquals(List.of("ERROR params need modelName and port, got {}"), oms.lines());
    }
}
